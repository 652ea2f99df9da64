"""Sweeps: runs over a grid of values and several seeds, aggregated per point.

Per point, the mean of each final metric and its 95% confidence interval,
``mean +- t(0.975, S-1) x sd / sqrt(S)`` (Student's t; sd with S-1 degrees of
freedom) over the S seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import ConfigError
from gossamer.results.frames import data_frame
from gossamer.results.run import Result

METRICS = (
    "test_accuracy_mean",
    "avg_model_accuracy",
    "megabytes_sent",
    "energy_joules",
    "cumulative_prequential_loss",
)


@dataclass
class Sweep:
    """The runs of a sweep, and the table of their mean and 95% interval per point."""

    points: list[dict[str, Any]]  # grid values of each point
    runs: dict[tuple[int, int], Result]  # (point index, seed) -> result
    table: dict[str, np.ndarray]  # sweep.csv columns
    out: Path | None

    def frame(self, table: str = "points") -> Any:
        """A table of the sweep as a pandas DataFrame; needs pandas (``pip install
        'gossamer[notebook]'``).

        Args:
            table: "points" (sweep.csv: per point, the mean of each final metric and
                its 95% interval) or "runs" (runs.csv: per run, its seed and final
                metrics). The grid's columns hold the values themselves (``0.05``, not
                the JSON text ``"0.05"`` of the CSV; lists and mappings stay JSON text),
                counts are int64, metrics float64 (NaN: no interval from one seed).
        """
        keys = list(self.points[0]) if self.points else []
        if table == "points":
            columns = dict(self.table)
        elif table == "runs":
            columns = runs_table(self.points, self.runs, keys)
        else:
            raise ConfigError(f"Sweep.frame: expected table 'points' or 'runs'; got {table!r}")
        index = [i for i, _ in self.runs] if table == "runs" else range(len(self.points))
        for key in keys:
            columns[key] = grid_values([self.points[i][key] for i in index])
        plain = "sweep.table" if table == "points" else "runs.csv and sweep.runs"
        return data_frame(columns, "Sweep.frame", plain)


def point_label(point: dict[str, Any]) -> str:
    """``key=value_key=value`` (strings bare, other values as JSON); 'base' if empty."""
    if not point:
        return "base"
    return "_".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def final_metrics(result: Result) -> dict[str, float]:
    final, totals = result.summary["final"], result.summary["totals"]
    values = {
        "test_accuracy_mean": final["test_accuracy_mean"],
        "avg_model_accuracy": final["avg_model_accuracy"],
        "megabytes_sent": totals["bytes_sent"] / 1e6,
        "energy_joules": totals["energy_joules"],
    }
    if "cumulative_prequential_loss" in final:
        values["cumulative_prequential_loss"] = final["cumulative_prequential_loss"]
    return values


def confidence_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% Student-t interval; one value: (v, nan, nan)."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data)))
    return mean, mean - half, mean + half


def grid_values(values: list[Any]) -> list[Any]:
    """A grid key's values for a frame: numbers, booleans and strings as themselves;
    where one is a list or a mapping, all as JSON text (as in the CSV)."""
    if all(v is None or isinstance(v, (bool, int, float, str)) for v in values):
        return values
    return [json.dumps(v) for v in values]


def runs_table(
    points: Sequence[dict[str, Any]], runs: dict[tuple[int, int], Result], keys: Sequence[str]
) -> dict[str, np.ndarray]:
    """runs.csv: per run, its point's grid values (JSON text), its seed (``run_seed``
    when the grid is over ``seed``) and its final metrics."""
    rows = [
        {
            **{k: json.dumps(points[index][k]) for k in keys},
            "run_seed" if "seed" in keys else "seed": seed,
            **final_metrics(result),
        }
        for (index, seed), result in runs.items()
    ]
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows], dtype=object) for k in names}


def aggregate(points, results, keys) -> dict[str, np.ndarray]:
    rows = []
    for index, point in enumerate(points):
        runs = [r for (i, _), r in results.items() if i == index]
        row: dict[str, Any] = {key: json.dumps(point[key]) for key in keys}
        row["seeds"] = len(runs)
        per_run = [final_metrics(r) for r in runs]
        for metric in METRICS:
            if all(metric in m for m in per_run):
                mean, low, high = confidence_interval([m[metric] for m in per_run])
                row.update({metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows], dtype=object) for k in names}
