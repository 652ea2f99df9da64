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

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import Config, ConfigError, RunDirectoryError, arg, dump_config, load_config
from gossamer.results.files import (
    atomic_write,
    json_default,
    read_table,
    rows_to_columns,
    table_to_csv,
)
from gossamer.results.frames import data_frame


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

    def frame(self, table: str = "metrics") -> Any:
        """A table of the run as a pandas DataFrame: "metrics" (metrics.csv, one row per
        evaluated round), "rounds" (rounds.csv, one row per round) or "nodes" (nodes.csv,
        one row per node); counts as int64, measurements as float64. Needs pandas
        (``pip install 'gossamer[notebook]'``)."""
        if table not in ("metrics", "rounds", "nodes"):
            raise ConfigError(
                f"Result.frame: expected table 'metrics', 'rounds' or 'nodes'; got {table!r}"
            )
        return data_frame(getattr(self, table), "Result.frame", f"result.{table}")


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
        out = arg("out")
        if path.exists() and not path.is_dir():
            raise RunDirectoryError(f"{out}: '{path}' exists and is not a directory")
        if resume:
            if (path / "summary.json").exists():
                raise RunDirectoryError(
                    f"resume: '{path}' holds a finished run (summary.json exists); "
                    "there is nothing to resume"
                )
            return
        kind = directory_kind(path)
        if kind in FINISH_MARKS:
            raise RunDirectoryError(
                f"{out}: '{path}' holds a {kind} ({FINISH_MARKS[kind]} exists), not a run; "
                "choose another directory"
            )
        if path.is_dir() and any(path.iterdir()) and not (path / "config.yaml").exists():
            raise RunDirectoryError(
                f"{out}: '{path}' is not empty and holds no run (no config.yaml); "
                "choose a new or empty directory"
            )
        if force:
            return
        if (path / "summary.json").exists():
            raise RunDirectoryError(
                f"{out}: '{path}' holds a finished run (summary.json exists); "
                f"choose another directory or pass {arg('force')}"
            )
        if (path / CHECKPOINT).exists():
            raise RunDirectoryError(
                f"{out}: '{path}' holds an unfinished run with a checkpoint; continue it with "
                f"gossamer resume {path}, or pass {arg('force')} to start over"
            )

    def begin(self, config: Config, label_counts: np.ndarray | None, topology=None) -> None:
        """Start a fresh run: config, the topology's edges and the label histograms."""
        if self.path.exists():  # forced or unfinished: start clean
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            for name in RUN_FOLDERS:
                shutil.rmtree(self.path / name, ignore_errors=True)
            for shard in self.path.glob("checkpoint.round*.rank*.safetensors"):
                shard.unlink(missing_ok=True)  # a checkpoint's per-rank files
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
        atomic_write(self.path / "metrics.csv", table_to_csv(rows_to_columns(rows)))

    def write_rounds(self, per_round: list[dict[str, Any]]) -> None:
        if per_round:
            atomic_write(self.path / "rounds.csv", table_to_csv(rows_to_columns(per_round)))

    def finish(self, result: Result) -> None:
        """The last files; summary.json last of all, marking the run finished."""
        atomic_write(self.path / "rounds.csv", table_to_csv(result.rounds))
        atomic_write(self.path / "nodes.csv", table_to_csv(result.nodes))
        text = json.dumps(result.summary, indent=2, default=json_default)
        atomic_write(self.path / "summary.json", text + "\n")


CHECKPOINT = "checkpoint.safetensors"  # written by gossamer.workflow.checkpoint
RUN_FILES = (
    "summary.json",
    "metrics.csv",
    "rounds.csv",
    "nodes.csv",
    "labels.csv",
    "topology.csv",
    "label_distribution.png",
    CHECKPOINT,
    "report.html",
    "report.md",
)
RUN_FOLDERS = ("report_files", "tensorboard")


# ------------------------------------------------------------------ reading runs back


def load_run(path: str | Path) -> Result:
    """Read a run directory back: config, summary, metrics, rounds, nodes, labels.

    An unfinished run (no summary.json) loads too; its summary is ``{"finished":
    False}`` and ``nodes`` is empty.
    """
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise RunDirectoryError(f"'{path}': not a gossamer run directory (no config.yaml)")
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
