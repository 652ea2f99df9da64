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

import collections
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    # Ctrl-C came during the last round: the run finished, and a sweep or comparison
    # running it stops after it.
    stop_requested: bool = False

    @property
    def final(self) -> dict[str, float]:
        return self.summary["final"]

    @property
    def totals(self) -> dict[str, float]:
        return self.summary["totals"]

    def frame(self, table: str = "metrics"):
        """A table ("metrics", "rounds" or "nodes") as a pandas DataFrame."""
        if table not in ("metrics", "rounds", "nodes"):
            raise ValueError(f"frame: expected 'metrics', 'rounds' or 'nodes'; got {table!r}")
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Result.frame needs pandas (pip install pandas); the tables are also plain "
                "numpy columns: result.metrics, result.rounds, result.nodes"
            ) from None
        return pd.DataFrame(getattr(self, table))


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
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, text: str) -> None:
    """Write text to path atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as handle:
        handle.write(text)


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


FINISH_MARKS = {"comparison": "comparison.json", "sweep": "sweep.json"}  # written last


def directory_kind(path: Path) -> str | None:
    """What a directory holds: 'comparison' or 'sweep' (by their finish marks), 'run'
    (a config.yaml), or None."""
    for kind, mark in FINISH_MARKS.items():
        if (path / mark).exists():
            return kind
    return "run" if (path / "config.yaml").exists() else None


class RunWriter:
    """Writes one run directory; refuses to overwrite a finished run unless forced.

    ``resume=True`` continues an unfinished run directory in place.
    """

    def __init__(self, path: Path, force: bool = False, resume: bool = False):
        self.path = path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--out: '{path}' exists and is not a directory")
        if resume:
            if (path / "summary.json").exists():
                raise ConfigError(
                    f"resume: '{path}' holds a finished run (summary.json exists); "
                    "there is nothing to resume"
                )
            return
        kind = directory_kind(path)
        if kind in FINISH_MARKS:
            raise ConfigError(
                f"--out: '{path}' holds a {kind} ({FINISH_MARKS[kind]} exists), not a run; "
                "choose another directory"
            )
        if path.is_dir() and any(path.iterdir()) and not (path / "config.yaml").exists():
            raise ConfigError(
                f"--out: '{path}' is not empty and holds no run (no config.yaml); "
                "choose a new or empty directory"
            )
        if force:
            return
        if (path / "summary.json").exists():
            raise ConfigError(
                f"--out: '{path}' holds a finished run (summary.json exists); "
                "choose another directory or pass --force"
            )
        if (path / "checkpoint.safetensors").exists():
            raise ConfigError(
                f"--out: '{path}' holds an unfinished run with a checkpoint; continue it with "
                f"gossamer resume {path}, or pass --force to start over"
            )

    def begin(self, config: Config, label_counts: np.ndarray | None, topology=None) -> None:
        """Start a fresh run: config, the topology's edges and the label histograms."""
        if self.path.exists():  # forced or unfinished: start clean
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            for name in RUN_FOLDERS:
                shutil.rmtree(self.path / name, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path / "config.yaml", dump_config(config))
        if topology is not None:
            edges = topology.rows < topology.cols  # each undirected edge once
            columns = {
                "u": topology.rows[edges],
                "v": topology.cols[edges],
                "weight": topology.weights[edges],
            }
            atomic_write(self.path / "topology.csv", table_to_csv(columns))
        if label_counts is not None:
            columns = {"node": np.arange(len(label_counts))}
            columns.update({f"class_{c}": label_counts[:, c] for c in range(label_counts.shape[1])})
            atomic_write(self.path / "labels.csv", table_to_csv(columns))

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        columns = {k: np.array([r.get(k, np.nan) for r in rows]) for k in rows[0]}
        atomic_write(self.path / "metrics.csv", table_to_csv(columns))

    def write_rounds(self, per_round: list[dict[str, Any]]) -> None:
        if per_round:
            keys = list(dict.fromkeys(k for row in per_round for k in row))
            columns = {k: np.array([row.get(k, np.nan) for row in per_round]) for k in keys}
            atomic_write(self.path / "rounds.csv", table_to_csv(columns))

    def finish(self, result: Result) -> None:
        """The last files; summary.json last of all, marking the run finished."""
        atomic_write(self.path / "rounds.csv", table_to_csv(result.rounds))
        atomic_write(self.path / "nodes.csv", table_to_csv(result.nodes))
        text = json.dumps(result.summary, indent=2, default=json_default)
        atomic_write(self.path / "summary.json", text + "\n")


RUN_FILES = (
    "summary.json",
    "metrics.csv",
    "rounds.csv",
    "nodes.csv",
    "labels.csv",
    "topology.csv",
    "label_distribution.png",
    "checkpoint.safetensors",
    "report.html",
    "report.md",
)
RUN_FOLDERS = ("report_files", "tensorboard")


# ------------------------------------------------------------------ reading runs back


def read_table(path: Path) -> dict[str, np.ndarray]:
    """A CSV written by gossamer: numeric columns as numbers (empty cells NaN)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        rows = list(reader)
    columns = {}
    for i, name in enumerate(header):
        cells = [row[i] if i < len(row) else "" for row in rows]
        columns[name] = _column(cells)
    return columns


def _column(cells: list[str]) -> np.ndarray:
    try:
        return np.array([int(c) for c in cells], dtype=np.int64)
    except ValueError:
        pass
    try:
        return np.array([float(c) if c != "" else np.nan for c in cells], dtype=np.float64)
    except ValueError:
        return np.array(cells, dtype=object)


def load_run(path: str | Path) -> Result:
    """Read a run directory back: config, summary, metrics, rounds, nodes, labels.

    An unfinished run (no summary.json) loads too; its summary is ``{"finished":
    False}`` and ``nodes`` is empty.
    """
    from gossamer.config import load_config

    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"'{path}': not a gossamer run directory (no config.yaml)")
    summary_file = path / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    summary.setdefault("finished", summary_file.is_file())
    labels = path / "labels.csv"
    label_counts = None
    if labels.is_file():
        table = read_table(labels)
        label_counts = np.stack([v for k, v in table.items() if k != "node"], axis=1)

    def optional(name: str) -> dict[str, np.ndarray]:
        return read_table(path / name) if (path / name).is_file() else {}

    return Result(
        config=load_config(path / "config.yaml"),
        summary=summary,
        metrics=optional("metrics.csv"),
        rounds=optional("rounds.csv"),
        nodes=optional("nodes.csv"),
        run_dir=path,
        label_counts=label_counts,
    )
