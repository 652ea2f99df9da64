"""Files of results: written atomically, CSV tables with one cell format, read back.

Every file is written to a temporary name in its directory, flushed to disk and
renamed into place, so a crash or Ctrl-C never leaves a half-written file. Every
``.json`` file is strict JSON (RFC 8259): a number JSON cannot write (NaN, an
infinity, e.g. the training loss of a run in which no node trained) is ``null``.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from gossamer.config import RunDirectoryError


@contextlib.contextmanager
def atomic_open(path: Path, binary: bool = False) -> Iterator[IO]:
    """A file to write that appears at ``path`` only once complete: written to a
    temporary file in the same directory, flushed to disk and renamed into place (a
    crash leaves the old file or the new one, never a torn one)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = {"mode": "wb"} if binary else {"mode": "w", "encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, **mode) as handle:
            yield handle
            handle.flush()
            if hasattr(os, "fchmod"):  # as open() would: the umask's mode, not 0600
                os.fchmod(handle.fileno(), 0o666 & ~_umask())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    """The process's umask: from /proc on Linux (nothing changes), else by setting it
    and setting it back (once, at import, before any thread writes files)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _umask() -> int:
    """The umask files are written with: the process's at import, or a later one set
    in this process on Linux."""
    if os.path.exists("/proc/self/status"):
        return _read_umask()
    return _UMASK


def atomic_write(path: Path, text: str) -> None:
    """Write text to path atomically (see :func:`atomic_open`); a ``.json`` file as
    strict JSON (see :func:`strict_json`)."""
    if path.suffix == ".json":
        text = strict_json(text)
    with atomic_open(path) as handle:
        handle.write(text)


def json_text(value: Any, indent: int | None = 2) -> str:
    """``value`` as strict JSON (RFC 8259): NaN and infinities, which JSON has no
    numbers for, are null; numpy scalars and arrays are Python numbers and lists."""
    return json.dumps(_finite(value), indent=indent, default=json_default, allow_nan=False)


def strict_json(text: str) -> str:
    """JSON text with its ``NaN``, ``Infinity`` and ``-Infinity`` (Python's json
    writes them, no JSON reader need accept them) as null; other text is unchanged."""
    found = []

    def constant(name: str) -> None:
        found.append(name)

    try:
        value = json.loads(text, parse_constant=constant)
    except ValueError:  # not JSON: written as given
        return text
    if not found:
        return text
    return json_text(value) + ("\n" if text.endswith("\n") else "")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as None, through dicts, lists and tuples."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def directory_names(labels: Sequence[str], limit: int = 80) -> list[str]:
    """A distinct, filesystem-safe folder name for each distinct label: the label with
    runs of characters other than letters, digits and ``.=_-`` replaced by ``-``, cut
    to ``limit``; where that is cut or not unique, a short hash of the label follows."""
    cleaned = [re.sub(r"[^A-Za-z0-9.=_-]+", "-", label).strip("-") or "run" for label in labels]
    counts = collections.Counter(name[:limit] for name in cleaned)
    names = []
    for label, name in zip(labels, cleaned, strict=True):
        if len(name) > limit or counts[name[:limit]] > 1:
            name = f"{name[:limit]}-{hashlib.sha256(label.encode()).hexdigest()[:8]}"
        names.append(name)
    return names


def table_to_csv(columns: dict[str, np.ndarray]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = list(columns)
    writer.writerow(names)
    for i in range(len(columns[names[0]]) if names else 0):
        writer.writerow([_cell(columns[name][i]) for name in names])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return repr(float(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def json_default(value: Any) -> Any:
    """``json.dumps(..., default=json_default)``: numpy scalars as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def read_table(path: Path, types: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """A CSV written by gossamer as numpy columns.

    Args:
        path: the CSV file.
        types: the type of each column as recorded when the table was written (see
            :func:`column_types`); a column not named here is read as integers if every
            cell is one, else as floats if every cell is one (empty cells NaN), else as
            text. That is exact for numbers (floats are written with a point or an
            exponent) but not for text that looks like a number, nor for booleans.
    """
    types = types or {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = list(reader)
    columns = {}
    for i, name in enumerate(header):
        cells = [row[i] if i < len(row) else "" for row in rows]
        if name in types:
            columns[name] = _typed_cells(cells, types[name], path, name)
        else:
            columns[name] = _column(cells)
    return columns


#: The types a table column can have, and the numpy dtype each is held in.
COLUMN_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float64, "str": object}


def column_types(columns: Mapping[str, Sequence[Any]]) -> dict[str, str]:
    """The type of each column ("bool", "int", "float" or "str"), from its values (Python
    or numpy values, never their text): all booleans is "bool", all integers "int",
    numbers with None or NaN among them "float"; anything else is "str"."""
    return {name: _value_type(values) for name, values in columns.items()}


def _value_type(values: Sequence[Any]) -> str:
    array = np.asarray(values)
    if array.dtype != object:
        kinds = {"b": "bool", "i": "int", "u": "int", "f": "float"}
        return kinds.get(array.dtype.kind, "str")
    items = [v.item() if isinstance(v, np.generic) else v for v in array]  # Python values
    if all(isinstance(v, bool) for v in items):
        return "bool" if items else "float"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return "int"
    if all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in items):
        return "float"
    return "str"


def typed_column(values: Sequence[Any], kind: str) -> np.ndarray:
    """Values (Python or numpy, not text) as a numpy column of type ``kind`` (None and NaN
    are NaN in a float column and empty in a text column, as in the CSV)."""
    array = np.asarray(values)
    if array.dtype != object and kind != "str":  # already numbers: no loop over values
        return array.astype(COLUMN_DTYPES[kind], copy=False)
    if kind == "float":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "str":
        cells = [_cell(v) if v is not None else "" for v in values]
        return np.array(cells, dtype=object)
    return np.array(list(values), dtype=COLUMN_DTYPES[kind])


def _typed_cells(cells: list[str], kind: str, path: Path, name: str) -> np.ndarray:
    """CSV cells of a column whose type was recorded when it was written."""
    if kind not in COLUMN_DTYPES:
        raise RunDirectoryError(
            f"'{path}': column '{name}' is recorded as {kind!r}; expected one of "
            f"{', '.join(COLUMN_DTYPES)}"
        )
    try:
        if kind == "bool":
            return np.array([{"True": True, "False": False}[c] for c in cells], dtype=np.bool_)
        if kind == "int":
            return np.array([int(c) for c in cells], dtype=np.int64)
        if kind == "float":
            return np.array([float(c) if c != "" else np.nan for c in cells], dtype=np.float64)
        return np.array(cells, dtype=object)
    except (KeyError, ValueError):
        pass
    raise RunDirectoryError(
        f"'{path}': column '{name}' is recorded as {kind}, but its cells are {cells!r}; "
        "the file was changed after it was written"
    )


def _column(cells: list[str]) -> np.ndarray:
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(c) if c != "" else np.nan for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=object)


def rows_to_columns(rows: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Records (dicts) as named columns over the union of their keys (missing: NaN)."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, np.nan) for row in rows]) for k in keys}
