"""gossamer's errors: one base class, one message shape, two spellings of arguments.

Every error a user can cause is a :class:`GossamerError` whose message names what to
change, what was expected and what was given (as scikit-learn's parameter checks do).
The Python API and the command line name the same argument differently (``out`` and
``--out``, ``overrides`` and ``--set``): a message marks an argument with
:func:`arg` (or any text with :func:`spelled`), ``str(error)`` spells it as the Python
API does and :meth:`GossamerError.cli_message` as the command line does.

:class:`ConfigError` is any input that cannot be used, reported before work starts;
its subclasses say which kind of input: data files (:class:`DataError`), output
directories (:class:`RunDirectoryError`) and checkpoints (:class:`CheckpointError`).
They derive from ConfigError so that code catching ConfigError catches them all.

A message echoes what was given through :func:`shown`, a repr bounded to
:data:`SHOWN_CHARS` characters, and every message is bounded line by line
(:data:`LINE_CHARS`), so no input, however large, makes an error large.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

# Separators that never occur in a path or a value a user types.
_OPEN, _SPLIT, _CLOSE = "\x1f", "\x1e", "\x1d"
_MARKED = re.compile(f"{_OPEN}([^{_SPLIT}]*){_SPLIT}([^{_CLOSE}]*){_CLOSE}")

#: How each marked argument is spelled by the Python API and by the command line.
API_NAMES = {
    "out": "out",
    "force": "force=True",
    "set": "overrides",
    "protocol": "protocols",
    "grid": "grid",
    "seeds": "seeds",
    "progress": "progress",
    "callbacks": "callbacks",
    "only": "only",
}
CLI_NAMES = {
    "out": "--out",
    "force": "--force",
    "set": "--set",
    "protocol": "--protocol",
    "grid": "--grid",
    "seeds": "--seeds",
    "progress": "--progress",
    "callbacks": "callbacks (Python API only)",
    "only": "--only",
}


def spelled(api: str, cli: str) -> str:
    """Text that reads ``api`` in the Python API's messages and ``cli`` on the command line."""
    return f"{_OPEN}{api}{_SPLIT}{cli}{_CLOSE}"


def arg(name: str) -> str:
    """Mark an argument in a message, e.g. ``f"{arg('out')}: '{path}' is not a directory"``."""
    if name not in API_NAMES:
        raise KeyError(f"arg: unknown argument {name!r}; expected one of {sorted(API_NAMES)}")
    return spelled(API_NAMES[name], CLI_NAMES[name])


#: The most characters of a given value that a message shows (``shown``).
SHOWN_CHARS = 200
#: The most characters of one line of any message; the rest is counted, not shown.
LINE_CHARS = 1_000
#: The most problems one validation error lists (``format_validation_error``).
PROBLEMS_SHOWN = 20


class _BoundedRepr(reprlib.Repr):
    """reprlib's Repr, which stops early in large containers, with integers of any size
    (``repr`` refuses those past 4,300 digits)."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 4 * SHOWN_CHARS:
            return f"<an integer of {len(hex(x)) - 2:,} hex digits>"
        return super().repr_int(x, level)


_REPR = _BoundedRepr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxlong, _REPR.maxother = 4, SHOWN_CHARS, SHOWN_CHARS, 80
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 20


def shown(value: Any) -> str:
    """``repr(value)`` for a message, at most SHOWN_CHARS characters (ending ``...``
    when cut); large containers are never turned into text whole."""
    text = _REPR.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def _bounded(message: str) -> str:
    lines = message.split("\n")
    return "\n".join(
        line
        if len(line) <= LINE_CHARS
        else f"{line[:LINE_CHARS]}... ({len(line) - LINE_CHARS:,} more characters)"
        for line in lines
    )


class GossamerError(Exception):
    """Base of every error gossamer raises for a person to act on."""

    def __str__(self) -> str:
        return _bounded(_MARKED.sub(lambda match: match.group(1), super().__str__()))

    def cli_message(self) -> str:
        """The message with arguments spelled as command-line flags."""
        return _bounded(_MARKED.sub(lambda match: match.group(2), super().__str__()))

    def prefixed(self, prefix: str) -> GossamerError:
        """The same error with ``prefix`` before its message (arguments stay marked)."""
        return type(self)(prefix + super().__str__())


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


class DivergedError(GossamerError):
    """Training diverged: some node's loss is no longer a finite number."""


def format_validation_error(
    error: ValidationError, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: ``key: expected ...; got ...`` (the value :func:`shown`),
    the first PROBLEMS_SHOWN problems and a count of the rest."""
    lines = []
    problems = error.errors(include_url=False, include_context=False)
    for item in problems[:PROBLEMS_SHOWN]:
        loc = [str(part) for part in item["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, item["loc"][:-1])
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            lines.append(f"  {key}: unknown key{hint}")
            continue
        message = item["msg"]
        message = message[0].lower() + message[1:]
        lines.append(f"  {key}: {message}; got {shown(item.get('input'))}")
    if len(problems) > PROBLEMS_SHOWN:
        lines.append(f"  ... and {len(problems) - PROBLEMS_SHOWN:,} more problems")
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
