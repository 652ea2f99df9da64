"""gossamer's errors: one base class, one message shape, two spellings of arguments.

Every error a user can cause is a :class:`GossamerError` whose message names what to
change, what was expected and what was given (as scikit-learn's parameter checks do).
The Python API and the command line name the same argument differently (``out`` and
``--out``, ``overrides`` and ``--set``): a message marks an argument with
:func:`arg`, ``str(error)`` spells it as the Python API does and
:meth:`GossamerError.cli_message` as the command line does.

:class:`ConfigError` is any input that cannot be used, reported before work starts;
its subclasses say which kind of input: data files (:class:`DataError`), output
directories (:class:`RunDirectoryError`) and checkpoints (:class:`CheckpointError`).
They derive from ConfigError so that code catching ConfigError catches them all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

_MARK = "\x1f"  # unit separator: never in a path or a config value a user types
_MARKED = re.compile(f"{_MARK}([a-z_]+){_MARK}")

#: How each marked argument is spelled by the Python API and by the command line.
API_NAMES = {
    "out": "out",
    "force": "force=True",
    "set": "overrides",
    "protocol": "protocols",
    "grid": "grid",
    "seeds": "seeds",
}
CLI_NAMES = {
    "out": "--out",
    "force": "--force",
    "set": "--set",
    "protocol": "--protocol",
    "grid": "--grid",
    "seeds": "--seeds",
}


def arg(name: str) -> str:
    """Mark an argument in a message, e.g. ``f"{arg('out')}: '{path}' is not a directory"``."""
    if name not in API_NAMES:
        raise KeyError(f"arg: unknown argument {name!r}; expected one of {sorted(API_NAMES)}")
    return f"{_MARK}{name}{_MARK}"


class GossamerError(Exception):
    """Base of every error gossamer raises for a person to act on."""

    def __str__(self) -> str:
        return _spell(super().__str__(), API_NAMES)

    def cli_message(self) -> str:
        """The message with arguments spelled as command-line flags."""
        return _spell(super().__str__(), CLI_NAMES)


class ConfigError(GossamerError):
    """Input that cannot be used (a config, an argument, a file), found before any work.

    Deliberately not a ``ValueError``: pydantic wraps ``ValueError`` raised inside
    validators, and this error must reach the user with its key path intact.
    """


class DataError(ConfigError):
    """A dataset file is missing, malformed or inconsistent; the message names the file."""


class RunDirectoryError(ConfigError):
    """An output directory cannot be used: it holds other results, or is not a directory."""


class CheckpointError(ConfigError):
    """A checkpoint cannot be resumed: missing, torn, of another version or another config."""


def _spell(message: str, names: dict[str, str]) -> str:
    return _MARKED.sub(lambda match: names[match.group(1)], message)


def format_validation_error(
    error: ValidationError, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: ``key: expected ...; got ...``."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, item["loc"][:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
            continue
        message = item["msg"]
        message = message[0].lower() + message[1:]
        lines.append(f"  {key}: {message}; got {item.get('input')!r}")
    return "\n".join(lines)


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or ())]
        sub = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not sub:
            return []
        model = sub[0]
    return list(model.model_fields)
