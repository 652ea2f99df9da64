"""Reading results back: a run, a comparison or a sweep directory, as numpy columns."""

from __future__ import annotations

import json
from pathlib import Path

from gossamer.config import RunDirectoryError
from gossamer.results.comparison import Comparison
from gossamer.results.files import column_types, read_table
from gossamer.results.run import Result, directory_kind, load_run
from gossamer.results.sweep import Sweep


def load(path: str | Path) -> Result | Comparison | Sweep:
    """Read results back: a run directory gives a Result, a comparison directory a
    Comparison, a sweep directory a Sweep (tables as numpy columns, each of the type
    recorded when it was written; ``frame()`` gives them as pandas DataFrames when pandas
    is installed)."""
    path = Path(path)
    kind = directory_kind(path)
    if kind == "comparison":
        meta = json.loads((path / "comparison.json").read_text())
        results = {name: load_run(path / sub) for name, sub in meta["variants"].items()}
        types = meta.get("columns") or _record_types(meta["table"])
        return Comparison(results, read_table(path / "comparison.csv", types), path)
    if kind == "sweep":
        meta = json.loads((path / "sweep.json").read_text())
        runs = {
            (run["point"], run["seed"]): load_run(path / folder)
            for folder, run in meta["runs"].items()
        }
        # before the types were recorded: the grid's columns are JSON text
        types = meta.get("columns") or dict.fromkeys(meta["grid"], "str")
        return Sweep(meta["points"], runs, read_table(path / "sweep.csv", types), path)
    if not path.is_dir():
        raise RunDirectoryError(f"load: '{path}' is not a directory")
    if kind is None and (any(path.glob("*/config.yaml")) or any(path.glob("*/seed-*/config.yaml"))):
        raise RunDirectoryError(
            f"load: '{path}' holds run directories but is not a run, a finished comparison "
            "(comparison.json) or a finished sweep (sweep.json); an unfinished comparison or "
            "sweep finishes when its command is run again; or load the runs one by one"
        )
    return load_run(path)


def _record_types(records: list[dict]) -> dict[str, str]:
    """Column types of a comparison written before they were recorded: from the JSON
    values of its table (true/false, integers, numbers, null for NaN, strings)."""
    names = list(dict.fromkeys(k for row in records for k in row))
    return column_types({k: [row.get(k) for row in records] for k in names})
