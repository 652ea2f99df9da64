"""Loading configs: files, mappings and ``--set`` overrides, into a validated Config.

``load_config`` reads YAML or TOML (or takes a mapping), applies ``a.b=value``
overrides (values parsed as YAML: ``model.hidden=[128,64]``), validates every section
and the checks that span sections, and raises :class:`ConfigError` naming the key,
what was expected and what was given, before any tensor is allocated.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gossamer.config.errors import ConfigError, arg, format_validation_error
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
    for override in overrides:
        apply_override(raw, override, label)
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
    text = path.read_text(encoding="utf-8")
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise ConfigError(
                f"config file '{path}': expected a .yaml, .yml or .toml file; got '{suffix}'"
            )
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file '{path}': cannot parse: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file '{path}': expected a mapping at the top level; got {type(data).__name__}"
        )
    return data


def apply_override(raw: dict[str, Any], override: str, label: str | None = None) -> None:
    """Apply one ``a.b=value`` override to a raw config mapping, in place.

    ``label`` names where the override came from in errors (default: ``overrides``).
    """
    label = label or arg("set")
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{label}: expected key=value (e.g. protocol.period=5); got {override!r}")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        prefix = ".".join(parts[: depth + 1])
        if isinstance(child, str) and prefix in SELECTED_SECTIONS:  # `protocol: dpsgd`
            child = {"name": child}
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{label} {key}: '{prefix}' is a value, not a section")
        node[part] = child
        node = child
    section = ".".join(parts[:-1])
    selects = parts[-1] == "name" and section in SELECTED_SECTIONS
    if selects and _name(section, node) != value:  # another protocol, model, optimizer
        node.clear()  # or compressor: its keys start afresh
    node[parts[-1]] = value


def _name(section: str, value: dict[str, Any]) -> Any:
    """The name a section (a key of SELECTED_SECTIONS) selects: its own, or the default."""
    return value.get("name", SELECTED_SECTIONS[section].default)


def merge_config(raw: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into a copy of ``raw`` (a variant onto a base config).

    A section selected by name (``protocol``, ``model``, ``optimizer``) whose ``name``
    changes is replaced, not merged: the keys of one protocol mean nothing to another.
    A section without a name selects its kind's default (``sgd``, ``dpsgd``, ``mlp``).
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
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def config_hash(config: Config) -> str:
    """A short hash of the fully resolved config: equal configs, equal hashes."""
    return hashlib.sha256(dump_config(config).encode()).hexdigest()[:16]
