"""Run directories and the in-memory result of a run.

A run directory holds:

- ``config.yaml``: the fully resolved config (reloadable);
- ``metrics.csv``: one row per evaluated round (round 0 is the initial model);
- ``rounds.csv``: the ledger's totals of every round, and the protocol's round stats;
- ``nodes.csv``: per node: samples, degree, final test accuracy/loss, traffic, steps;
- ``summary.json``: written last, so its presence marks a finished run.

Every file is written to a temporary name and renamed into place, so a crash or
Ctrl-C never leaves a half-written file; ``metrics.csv`` is rewritten after each
evaluation so that an interrupted run keeps what it measured.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import Config, ConfigError, dump_config


@dataclass
class Result:
    """What a run produced: config, summary, per-round metrics, per-node values."""

    config: Config
    summary: dict[str, Any]
    metrics: dict[str, np.ndarray]  # metrics.csv columns, one entry per evaluated round
    rounds: dict[str, np.ndarray]  # rounds.csv columns, one entry per round
    nodes: dict[str, np.ndarray]  # nodes.csv columns, one entry per node
    run_dir: Path | None = None
    label_counts: np.ndarray | None = None  # (N, C) training samples of each class per node

    @property
    def final(self) -> dict[str, float]:
        return self.summary["final"]

    @property
    def totals(self) -> dict[str, float]:
        return self.summary["totals"]


def atomic_write(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class RunWriter:
    """Writes one run directory; refuses to overwrite a finished run unless forced."""

    def __init__(self, path: Path, force: bool = False):
        self.path = path
        if (path / "summary.json").exists() and not force:
            raise ConfigError(
                f"--out: '{path}' holds a finished run (summary.json exists); "
                "choose another directory or pass --force to overwrite it"
            )
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out: '{path}' exists and is not a directory")
        self._metrics: list[dict[str, Any]] = []

    def begin(self, config: Config) -> None:
        if self.path.exists():
            (self.path / "summary.json").unlink(missing_ok=True)  # forced: unfinished now
            for name in ("metrics.csv", "rounds.csv", "nodes.csv", "labels.csv"):
                (self.path / name).unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "config.yaml", dump_config(config))

    def write_metrics(self, row: dict[str, Any]) -> None:
        self._metrics.append(row)
        columns = {k: np.array([r[k] for r in self._metrics]) for k in self._metrics[0]}
        atomic_write(self.path / "metrics.csv", table_to_csv(columns))

    def finish(self, result: Result) -> None:
        atomic_write(self.path / "rounds.csv", table_to_csv(result.rounds))
        atomic_write(self.path / "nodes.csv", table_to_csv(result.nodes))
        if result.label_counts is not None:
            from gossamer.plots import write_label_distribution

            counts = result.label_counts
            columns = {"node": np.arange(len(counts))}
            columns.update({f"class_{c}": counts[:, c] for c in range(counts.shape[1])})
            atomic_write(self.path / "labels.csv", table_to_csv(columns))
            write_label_distribution(self.path / "label_distribution.png", counts)
        text = json.dumps(result.summary, indent=2, default=_json_default)
        atomic_write(self.path / "summary.json", text + "\n")
