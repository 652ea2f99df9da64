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
    points: list[dict[str, Any]]  # grid values of each point
    runs: dict[tuple[int, int], Result]  # (point index, seed) -> result
    table: dict[str, np.ndarray]  # sweep.csv columns
    out: Path | None


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
