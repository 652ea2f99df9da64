"""Registries: the names a config may use for protocols, models, optimizers and datasets.

One registration style for every kind of component: the module that implements a
component registers it under a name, with the config section class that validates
its keys (``@register_protocol(MyConfig)`` on a protocol class,
``@register_model(MyConfig)`` on a model builder, ...; see ``gossamer.sim``). The
``name`` key of a config section picks the registered class.

Components come from three places:

- built in: ``gossamer.sim`` registers gossamer's own when imported, which a registry
  does on the first lookup of an implementation or a config section; their names and
  one line each are known before (``config/builtins.py``), so that listing them
  needs no torch;
- installed plugins: every entry point of the group ``gossamer.plugins`` names a
  module that registers components when imported (like pytest's plugins); they are
  imported on the first lookup of a name;
- a file or module named in the config: ``protocol: {name: custom, import_path:
  "my_protocols.py:Gossip", ...}`` (see :func:`import_object`), recorded in the run's
  ``config.yaml`` so that ``resume``, ``compare`` and ``report`` find it again.

This layer holds the names and classes only; it never imports the layers that
register them (it imports ``gossamer.sim`` by name, as it imports a plugin).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gossamer.config import builtins
from gossamer.config.errors import ConfigError, format_validation_error

ENTRY_POINT_GROUP = "gossamer.plugins"
T = TypeVar("T", bound=type)
#: The name under which a config section loads its class from ``import_path``.
FROM_IMPORT_PATH = "custom"


class DatasetTraits(Protocol):
    """What the config layer asks of a registered dataset (``gossamer.sim.data``'s
    DatasetSource): enough to validate ``data`` without reading any file."""

    reads_files: bool  # read from data.root (or a download)
    downloadable: bool  # data.download: true fetches the standard files
    has_writers: bool  # samples carry their writer (partition: natural)

    def input_shape(self, config: Any) -> tuple[int, ...] | None:
        """The input shape the config implies, or None when only the files tell."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, assignment is validated,
    and no number may be infinite or NaN (a run would finish with NaN results).

    A number key takes a number: not a boolean (``rounds: true`` is not 1), not text
    in another notation than decimal (``0x10``, ``010``, ``1_000``, ``1:30``: YAML 1.1
    would read 16, 8, 1000 and 90), and an integer fits 64 bits (tensors hold it).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None:
            problem = number_problem(value, field.annotation)
            if problem is not None:
                raise PydanticCustomError("number", problem)
        return value


INT64_MAX = 2**63 - 1
# Text a number key accepts: what Python and YAML 1.2 read alike as a decimal number;
# and text that reads as a number in other notations (YAML 1.1's or Python's).
_DECIMAL = re.compile(r"\s*[-+]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?\s*")
_NUMBER_LIKE = re.compile(
    r"\s*[-+]?(?:0[xXoObB][0-9a-fA-F_]+|[0-9][0-9_:]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?)\s*"
)


def number_problem(value: Any, annotation: Any) -> str | None:
    """What makes ``value`` no number for a key of type ``annotation`` (None: nothing,
    or not a number key: pydantic checks the rest)."""
    scalars, containers = _kinds(annotation)
    wants_int, wants_float = int in scalars, float in scalars
    if isinstance(value, bool):
        if (wants_int or wants_float) and not ({bool, Any, True, False} & scalars):
            return f"expected {'an integer' if not wants_float else 'a number'}, not a boolean"
        return None
    if isinstance(value, str):
        takes_text = {str, Any, Path} & scalars or any(isinstance(k, str) for k in scalars)
        other_notation = _NUMBER_LIKE.fullmatch(value) and not _DECIMAL.fullmatch(value)
        if (wants_int or wants_float) and not takes_text and other_notation:
            return (
                "expected a number in decimal notation (hexadecimal, octal, leading zeros, "
                "'_' and ':' are not read as numbers)"
            )
        return None
    if isinstance(value, (int, float)) and wants_int and not wants_float:
        if abs(value) > INT64_MAX:
            return f"expected an integer of at most {INT64_MAX:,} in magnitude (64 bits)"
        return None
    for origin, args in containers:
        if origin in (list, tuple, set, frozenset) and isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                pairs = zip(value, args, strict=False)
            else:
                pairs = ((item, args[0] if args else Any) for item in value)
            for position, (item, item_type) in enumerate(pairs):
                problem = number_problem(item, item_type)
                if problem is not None:
                    return f"item {position}: {problem}"
        if origin is dict and isinstance(value, Mapping) and len(args) == 2:
            for key, item in value.items():
                problem = number_problem(item, args[1])
                if problem is not None:
                    return f"{key!r}: {problem}"
    return None


def _kinds(annotation: Any) -> tuple[set[Any], list[tuple[Any, tuple[Any, ...]]]]:
    """The scalar types (and Literal values) and the (origin, args) of the containers
    that ``annotation`` accepts, through Annotated, Optional and unions; a section
    (a BaseModel) is neither: it checks its own keys."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _kinds(args[0])
    if origin in (typing.Union, types.UnionType):
        scalars: set[Any] = set()
        containers: list[tuple[Any, tuple[Any, ...]]] = []
        for arg in args:
            inner_scalars, inner_containers = _kinds(arg)
            scalars |= inner_scalars
            containers += inner_containers
        return scalars, containers
    if origin is Literal:
        return set(args), []
    if origin is not None:
        return set(), [(origin, args)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(), []
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return {Path}, []
    return {annotation}, []


class Registry:
    """The registered components of one kind: name -> (config section class, implementation)."""

    def __init__(self, kind: str, default: str, imports: bool = False):
        self.kind = kind  # the config key: "protocol", "model", "optimizer", "dataset"
        self.default = default  # the name used when a section gives none
        # Whether ``name: custom`` loads the implementation from ``import_path``: the
        # imported class's ``config_class`` then validates the section's other keys.
        self.imports = imports
        # What an imported implementation must subclass; given by the layer that defines
        # it (gossamer.sim sets PROTOCOLS.base = Protocol), never imported from here.
        self.base: type | None = None
        self._entries: dict[str, tuple[type[Section] | None, Any]] = {}
        self._imported: dict[tuple[type, str], type[Section]] = {}
        # The built-ins of this kind, name -> one line; registered by importing
        # builtins.MODULE on the first lookup (load_builtins).
        self.builtins = builtins.BUILTINS.get(kind, {})
        self._replaced: set[str] = set()  # built-in names registered anew from elsewhere

    def register(self, name: str, config_class: type[Section] | None, implementation: Any) -> None:
        """Register ``implementation`` under ``name``; a later registration replaces it.

        The built-ins are registered first, so a component registered under a built-in's
        name replaces the built-in, never the reverse.
        """
        load_builtins()  # (a no-op while they register)
        if name in self._entries:  # the first registration of a built-in's name is its own
            self._replaced.add(name)
        self._entries[name] = (config_class, implementation)

    def names(self) -> list[str]:
        """Every registered name, built-ins and plugins included, sorted."""
        load_plugins()
        return sorted({*self.builtins, *self._entries})

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self.builtins or name in self._entries

    def config_class(self, name: str, key: str | None = None) -> type[Section] | None:
        return self._lookup(name, key)[0]

    def implementation(self, name: str) -> Any:
        return self._lookup(name)[1]

    def _lookup(self, name: str, key: str | None = None) -> tuple[type[Section] | None, Any]:
        if name not in self:
            raise ConfigError(
                f"{key or self.kind}.name: expected one of {', '.join(self.names())}; got {name!r}"
            )
        if name not in self._entries:
            load_builtins()
        return self._entries[name]

    def section(self, value: Any, key: str | None = None) -> Section:
        """Validate a config section with the class its ``name`` selects.

        ``value`` is a mapping, a bare name (``protocol: periodic``) or a section;
        ``key`` is where the section sits in the config, for errors (default: the kind).
        """
        key = key or self.kind
        if isinstance(value, Section):
            value = value.model_dump()
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{key}: expected a mapping with a 'name' key, got {type(value).__name__} {value!r}"
            )
        name = value.get("name", self.default)
        if not isinstance(name, str):
            raise ConfigError(f"{key}.name: expected a string; got {name!r}")
        if self.imports and name == FROM_IMPORT_PATH:
            cls = self._imported_section(value.get("import_path"), key)
            value = {**value, "import_path": absolute_import_path(value["import_path"])}
        else:
            cls = self.config_class(name, key)
        if cls is None:
            raise ConfigError(f"{key}.name: {name!r} has no config section")
        try:
            return cls.model_validate({**value, "name": name})
        except ValidationError as error:
            lines = format_validation_error(error, cls, prefix=key)
            raise ConfigError(f"{key} {name!r}:\n{lines}") from None

    def describe(self) -> dict[str, str]:
        """Every registered name with one line: a built-in's from ``config/builtins.py``
        (without importing it), any other's from its ``description`` or docstring."""
        described = {}
        for name in self.names():
            if name in self.builtins and name not in self._replaced:
                described[name] = self.builtins[name]
                continue
            config_class, implementation = self._entries[name]
            doc = getattr(implementation, "description", None) or implementation.__doc__
            described[name] = _first_sentence(doc or config_class.__doc__ or "")
        return described

    def class_decorator(self, config_class: type[Section]) -> Callable[[T], T]:
        """A class decorator that registers the class under ``config_class``'s ``name``
        and gives it ``config_class`` and ``name`` (``@register_protocol(MyConfig)``)."""

        def decorate(cls: T) -> T:
            cls.config_class = config_class
            cls.name = config_class.model_fields["name"].default
            self.register(cls.name, config_class, cls)
            return cls

        return decorate

    def resolve(self, section: Section) -> Any:
        """The implementation a validated section selects (imported for ``name: custom``)."""
        if self.imports and section.name == FROM_IMPORT_PATH:
            return import_object(section.import_path, f"{self.kind}.import_path")
        return self.implementation(section.name)

    def _imported_section(self, path: Any, prefix: str | None = None) -> type[Section]:
        """The config class of an implementation named by ``import_path``, with ``name:
        custom`` and ``import_path`` added to its keys."""
        key = f"{prefix or self.kind}.import_path"
        load_builtins()  # they set self.base
        if not isinstance(path, str):
            raise ConfigError(
                f"{key}: expected 'file.py:Class' or 'module:Class' with name "
                f"{FROM_IMPORT_PATH!r}; got {path!r}"
            )
        path = absolute_import_path(path)
        found = import_object(path, key)
        if self.base is not None and not (isinstance(found, type) and issubclass(found, self.base)):
            raise ConfigError(
                f"{key}: {path!r} is not a {self.kind} class (a subclass of "
                f"{self.base.__module__.split('.')[0]}.{self.base.__name__}); got {found!r}"
            )
        base = getattr(found, "config_class", None)
        if not (isinstance(base, type) and issubclass(base, Section)):
            raise ConfigError(f"{key}: {path!r} has no config_class (a config section class)")
        if (base, path) not in self._imported:  # one class per file, so configs compare equal
            self._imported[base, path] = create_model(
                f"{base.__name__}FromImportPath",
                __base__=base,
                name=(Literal[FROM_IMPORT_PATH], FROM_IMPORT_PATH),  # type: ignore[valid-type]
                import_path=(str, Field(description="'file.py:Class' or 'module:Class'")),
            )
        return self._imported[base, path]


def _first_sentence(doc: str) -> str:
    """The first paragraph of a docstring, on one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


_builtins_loaded = False
_loading_builtins = False


def load_builtins() -> None:
    """Import :data:`builtins.MODULE`, which registers the built-in components (once)."""
    global _builtins_loaded, _loading_builtins
    if _builtins_loaded or _loading_builtins:
        return
    _loading_builtins = True  # its registrations must not load it again
    try:
        importlib.import_module(builtins.MODULE)
        _builtins_loaded = True
    finally:
        _loading_builtins = False


_plugins_loaded = False


def load_plugins() -> None:
    """Import every module named by an entry point of ``gossamer.plugins`` (once)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # a plugin that looks names up while it loads must not recurse
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # a broken plugin is named, not swallowed; the next
            _plugins_loaded = False  # lookup tries again, so no plugin is silently left out
            raise ConfigError(
                f"plugin {entry.name!r} ({entry.value}) of entry point group "
                f"{ENTRY_POINT_GROUP!r} failed to load: {type(error).__name__}: {error}"
            ) from None


def import_object(path: str, key: str) -> Any:
    """``module.sub:Name`` or ``file.py:Name`` -> the object (None if the module lacks it);
    ConfigError naming ``key`` if the module cannot be imported.

    A module that is not importable as is is looked for in the current directory too
    (a module beside the config, as a user expects). Importing runs the user's code:
    that is what naming it in a config asks for.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{key}: expected 'module:Class' or 'file.py:Class'; got {path!r}")
    try:
        if module_name.endswith(".py"):
            module = _import_file(Path(module_name), key)
        else:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError:
                sys.path.insert(0, str(Path.cwd()))
                try:
                    module = importlib.import_module(module_name)
                finally:
                    sys.path.remove(str(Path.cwd()))
    except ConfigError:
        raise
    except Exception as error:  # an error inside the user's module
        raise ConfigError(
            f"{key}: importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    return getattr(module, attr, None)  # None: the caller names what it expected


_FILE_MODULES: dict[Path, Any] = {}


def _import_file(file: Path, key: str) -> Any:
    """Import a Python file once per process (a second config naming it reuses it, so its
    classes stay the same objects)."""
    file = file.expanduser().absolute()
    if file in _FILE_MODULES:
        return _FILE_MODULES[file]
    if not file.is_file():
        raise ConfigError(f"{key}: file '{file}' not found")
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:8]  # files of one name differ
    spec = importlib.util.spec_from_file_location(f"gossamer_user_{file.stem}_{digest}", file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    _FILE_MODULES[file] = module
    return module


def absolute_import_path(path: str) -> str:
    """A ``file.py:Name`` import path with the file made absolute (as the config's other
    paths are), so that a run directory's config.yaml works from anywhere."""
    module, sep, attr = path.partition(":")
    if sep and module.endswith(".py"):
        return f"{Path(module).expanduser().absolute()}:{attr}"
    return path


PROTOCOLS = Registry("protocol", default="dpsgd", imports=True)
MODELS = Registry("model", default="mlp")
OPTIMIZERS = Registry("optimizer", default="sgd")
DATASETS = Registry("dataset", default="digits")
COMPRESSORS = Registry("compression", default="none", imports=True)
AGGREGATORS = Registry("aggregator", default="mean", imports=True)
REGISTRIES = {
    r.kind: r for r in (PROTOCOLS, MODELS, OPTIMIZERS, DATASETS, COMPRESSORS, AGGREGATORS)
}
#: Config keys whose section is chosen by its ``name`` (a new name starts the section
#: afresh), dotted for a section inside another, with the registry that selects it.
SELECTED_SECTIONS = {
    "protocol": PROTOCOLS,
    "model": MODELS,
    "optimizer": OPTIMIZERS,
    "protocol.compression": COMPRESSORS,
    "protocol.aggregator": AGGREGATORS,
}


def registered_names(kind: str) -> list[str]:
    """Names registered for ``kind`` ('protocol', 'model', 'optimizer' or 'dataset')."""
    return REGISTRIES[kind].names()
