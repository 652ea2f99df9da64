"""Loading configs: files, mappings and ``--set`` overrides, into a validated Config.

``load_config`` reads YAML or TOML (or takes a mapping), applies ``a.b=value``
overrides (values parsed as YAML: ``model.hidden=[128,64]``), validates every section
and the checks that span sections, and raises :class:`ConfigError` naming the key,
what was expected and what was given, before any tensor is allocated.

YAML (files and override values) is read with YAML 1.2's numbers: an integer is
written in decimal and a float with a point or an exponent (``1e-3`` is a float).
YAML 1.1's other forms (``0x10``, ``010``, ``1:30``, ``1_000``) stay text, which a
number key refuses (``Section``), instead of silently reading 16, 8, 90 or 1000.
"""

from __future__ import annotations

import copy
import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gossamer.config.errors import ConfigError, arg, format_validation_error, shown
from gossamer.config.registry import SELECTED_SECTIONS
from gossamer.config.schema import Config

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def load_config(
    source: Config | Mapping[str, Any] | str | Path | None = None,
    overrides: Sequence[str] = (),
    label: str | None = None,
) -> Config:
    """Build a validated Config from a file, a mapping or nothing (the defaults).

    Args:
        source: a ``.yaml``/``.yml``/``.toml`` path, a mapping, a Config, or None.
        overrides: ``"a.b=value"`` strings applied in order; values are parsed as YAML.
        label: how errors in an override name where it came from (default: the
            ``overrides`` argument, ``--set`` on the command line).
    """
    parsed = [parse_override(override, label) for override in overrides]  # before any file
    origin = ""
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Config):
        raw = source.model_dump(mode="json")
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))  # overrides must not change the caller's mapping
    else:
        origin = str(source)
        raw = read_config_file(Path(source))
    if "variants" in raw:
        raise ConfigError(
            f"variants: {origin or 'this config'} describes a comparison of variants; "
            "run it with `gossamer compare` (or gossamer.compare), or remove the key"
        )
    apply_overrides(raw, parsed, label)
    where = f" in {origin}" if origin else ""
    try:
        config = Config.model_validate(raw)
        config.check_consistency()
    except ValidationError as error:
        lines = format_validation_error(error, Config)
        raise ConfigError(f"invalid configuration{where}:\n{lines}") from None
    except ConfigError as error:
        raise error.prefixed(f"invalid configuration{where}: ") from None
    return config


def comparison_base(source: Config | Mapping[str, Any] | str | Path | None) -> Any:
    """What ``load_config`` accepts, with a comparison's ``variants`` dropped: commands
    that look at one config (delta, devices) take a comparison file's base."""
    if isinstance(source, (str, Path)):
        source = read_config_file(Path(source))
    if isinstance(source, Mapping) and "variants" in source:
        source = {k: v for k, v in source.items() if k != "variants"}
    return source


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML or TOML config file; errors name the file."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}': not found")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml"):
        raise ConfigError(
            f"config file '{path}': expected a .yaml, .yml or .toml file; got '{suffix}'"
        )
    text = _read_utf8(path)
    try:
        data = tomllib.loads(text) if suffix == ".toml" else yaml.load(text, Loader=ConfigLoader)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file '{path}': cannot parse: {error}") from None
    except ConfigError as error:  # the loader's own refusals (aliases)
        raise error.prefixed(f"config file '{path}': ") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}': expected a mapping at the top level; got {type(data).__name__}"
        )
    return data


def _read_utf8(path: Path) -> str:
    """A config file's text; ConfigError naming the file and the first byte that is not
    UTF-8 (a config saved in another encoding, or not a text file)."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file '{path}': expected UTF-8 text; got byte "
            f"{data[error.start : error.start + 1]!r} at byte offset {error.start:,}, "
            "which is not UTF-8 (save the file as UTF-8)"
        ) from None


# ---------------------------------------------------------------- YAML with YAML 1.2 numbers

_INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_DECIMAL_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_DECIMAL_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9]+[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


#: The most values that aliases (``*name``) may bring into one YAML document, counted
#: as they expand (an alias of a list of 9 values brings 10): far more than a config
#: repeats, far fewer than an alias bomb ("billion laughs") expands to.
ALIASED_VALUES = 10_000


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's numbers (decimal integers; floats with a
    point or an exponent): the YAML 1.1 forms stay text (see the module docstring).

    Aliases are bounded while composing: each node records how many values it expands
    to (``expanded``), an alias adds its anchor's to the document's total, and past
    :data:`ALIASED_VALUES` (or for an alias inside its own anchor) loading stops with
    a ConfigError, before anything walks the expansion. PyYAML shares an alias's
    objects, so loading a bomb is cheap, but copying, validating or printing it is not.
    """

    def __init__(self, stream: Any):
        super().__init__(stream)
        self.aliased_values = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if not self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            node.expanded = 1 + sum(child.expanded for child in _children(node))
            return node
        event = self.peek_event()
        anchor = self.anchors.get(event.anchor)
        if anchor is not None:  # else PyYAML's "undefined alias" error
            line = event.start_mark.line + 1
            size = getattr(anchor, "expanded", None)
            if size is None:
                raise ConfigError(
                    f"line {line}: expected an alias to a finished anchor; got *{event.anchor} "
                    f"inside &{event.anchor} itself (a structure that contains itself)"
                )
            self.aliased_values += size
            if self.aliased_values > ALIASED_VALUES:
                raise ConfigError(
                    f"line {line}: expected aliases (*name) that expand to at most "
                    f"{ALIASED_VALUES:,} values in all; got {self.aliased_values:,} by "
                    f"*{event.anchor} (nested aliases that multiply, an alias bomb); write "
                    "the values out or use fewer aliases"
                )
        return super().compose_node(parent, index)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(_INT_TAG, _DECIMAL_INT, list("-+0123456789"))


def _construct_int(loader: ConfigLoader, node: yaml.ScalarNode) -> int:
    """A decimal integer (``!!int`` too); ConfigError for other forms and for one
    longer than Python reads from text (a ValueError traceback otherwise)."""
    line, text = node.start_mark.line + 1, node.value
    if not _DECIMAL_INT.match(text):
        raise ConfigError(f"line {line}: expected a decimal integer; got {shown(text)}")
    digits = getattr(sys, "get_int_max_str_digits", lambda: 0)()  # 0: no limit
    if digits and len(text.lstrip("+-")) > digits:
        raise ConfigError(
            f"line {line}: expected an integer of at most {digits:,} digits; got one of "
            f"{len(text.lstrip('+-')):,} digits"
        )
    return int(text)


ConfigLoader.add_constructor(_INT_TAG, _construct_int)
ConfigLoader.add_implicit_resolver(_FLOAT_TAG, _DECIMAL_FLOAT, list("-+.0123456789"))


class ConfigDumper(yaml.SafeDumper):
    """PyYAML's safe dumper that also quotes text ConfigLoader reads as a float (``1e3``),
    so a dumped config reads back the same with either loader."""


ConfigDumper.add_implicit_resolver(_FLOAT_TAG, _DECIMAL_FLOAT, list("-+.0123456789"))


def parse_value(text: str) -> Any:
    """An override's value, parsed as YAML (with ConfigLoader); text that is not YAML
    stays text, and an empty value is the empty string. Aliases past the loader's
    bound raise ConfigError."""
    if not text.strip():
        return ""
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError:
        return text


# ---------------------------------------------------------------- overrides


def parse_override(override: str, label: str | None = None) -> tuple[str, Any]:
    """``"a.b=value"`` -> ``("a.b", value)``; ConfigError unless it is key=value."""
    key, sep, text = override.partition("=") if isinstance(override, str) else ("", "", "")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"{label or arg('set')}: expected key=value (e.g. protocol.period=5); "
            f"got {shown(override)}"
        )
    try:
        return key, parse_value(text)
    except ConfigError as error:  # the loader's own refusals (aliases)
        raise error.prefixed(f"{label or arg('set')} {key}: ") from None


def apply_override(raw: dict[str, Any], override: str, label: str | None = None) -> None:
    """Apply one ``a.b=value`` override to a raw config mapping, in place (see
    :func:`apply_overrides`, which composes several)."""
    apply_overrides(raw, [override], label)


def apply_overrides(
    raw: dict[str, Any],
    overrides: Sequence[str | tuple[str, Any]],
    label: str | None = None,
) -> None:
    """Apply ``a.b=value`` overrides to a raw config mapping, in place, in order.

    Overrides compose in any order. A new ``name`` for a section selected by name
    (:data:`SELECTED_SECTIONS`: ``protocol``, ``model``, ``optimizer``,
    ``protocol.compression``) drops the keys the section had in ``raw`` (they belong to
    the component it named) but keeps every key that an override sets in it, before
    or after the new name; validation then refuses, naming it, any key the new
    component does not have. ``protocol=periodic`` is short for
    ``protocol.name=periodic`` (the section's keys stay when the name does not
    change), and a mapping for such a section sets each of its keys.

    ``label`` names where the overrides came from in errors (default: ``overrides``,
    ``--set`` on the command line); an override is a string or a parsed (key, value).
    """
    given: list[tuple[str, ...]] = []  # the keys the overrides set, as paths
    for override in overrides:
        key, value = override if isinstance(override, tuple) else parse_override(override, label)
        for path, item in _assignments(tuple(key.split(".")), value):
            _assign(raw, path, item, given, f"{label or arg('set')} {key}")
            given.append(path)


def _assignments(path: tuple[str, ...], value: Any) -> list[tuple[tuple[str, ...], Any]]:
    """The (path, value) pairs one override sets: a name or a mapping given to a section
    selected by name sets its ``name`` or each of its keys."""
    section = ".".join(path)
    if section not in SELECTED_SECTIONS:
        return [(path, value)]
    if isinstance(value, str):
        return [((*path, "name"), value)]
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _assignments((*path, str(k)), v)]
    return [(path, value)]  # refused by validation, naming the section


def _assign(
    raw: dict[str, Any],
    path: tuple[str, ...],
    value: Any,
    given: list[tuple[str, ...]],
    where: str,
) -> None:
    node = raw
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        prefix = ".".join(path[: depth + 1])
        if isinstance(child, str) and prefix in SELECTED_SECTIONS:  # `protocol: dpsgd`
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: '{prefix}' is a value, not a section")
        node[part] = child
        node = child
    section = path[:-1]
    named = ".".join(section)
    if path[-1] == "name" and named in SELECTED_SECTIONS and _name(named, node) != value:
        # another component: the section starts afresh, but for what the overrides set
        inside = [key[len(section) :] for key in given if key[: len(section)] == section]
        kept = [(inner, _lookup(node, inner)) for inner in inside if inner]
        node.clear()
        for inner, item in kept:
            if item is not _MISSING:
                _put(node, inner, item)
    node[path[-1]] = value


_MISSING = object()  # a key an override set that a later one removed


def _lookup(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return copy.deepcopy(node)


def _put(node: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = node.get(part)
        node[part] = child = child if isinstance(child, dict) else {}
        node = child
    node[path[-1]] = value


def _name(section: str, value: dict[str, Any]) -> Any:
    """The name a section (a key of SELECTED_SECTIONS) selects: its own, or the default."""
    return value.get("name", SELECTED_SECTIONS[section].default)


def merge_config(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``raw`` (a variant onto a base config).

    The rule of :func:`apply_overrides`: a section selected by name (``protocol``,
    ``model``, ``optimizer``, ``protocol.compression``) whose ``name`` the patch
    changes keeps the patch's keys only, so a variant naming another protocol drops
    the base's protocol keys (the keys of one protocol mean nothing to another) and
    every key it gives itself is validated. A section without a name selects its
    kind's default (``sgd``, ``dpsgd``, ``mlp``, ``none``).
    """
    return _merge(raw, patch, "")


def _merge(raw: dict[str, Any], patch: dict[str, Any], prefix: str) -> dict[str, Any]:
    merged = dict(raw)
    for key, value in patch.items():
        base = merged.get(key)
        path = f"{prefix}{key}"
        if path in SELECTED_SECTIONS:
            base = {"name": base} if isinstance(base, str) else base
            value = {"name": value} if isinstance(value, str) else value
            if isinstance(base, dict) and isinstance(value, dict):
                current = _name(path, base)
                if value.get("name", current) != current:
                    base = {}
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = _merge(base, value, f"{path}.")
        else:
            merged[key] = value
    return merged


def dump_config(config: Config) -> str:
    """The fully resolved config as YAML (reloadable with load_config)."""
    return yaml.dump(config.model_dump(mode="json"), Dumper=ConfigDumper, sort_keys=False)


def config_hash(config: Config) -> str:
    """A short hash of the fully resolved config: equal configs, equal hashes."""
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]
