"""Comparisons of runs: the table that compares variants, and how it is computed.

One row per variant: final quality, traffic and energy, simulated time and the time to
accuracy (simulated seconds until the mean test accuracy first reached 90% of the best
final accuracy among the variants, at an evaluated round); with streams, the
cumulative prequential loss and, around each drift, recovery time, loss and traffic.
A variant is *Pareto optimal* when no other variant is at least as good in every
respect and better in one; the respects are quality (final mean test accuracy, or with
streams the cumulative prequential loss), bytes sent and energy used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.results.frames import data_frame
from gossamer.results.run import Result

RECOVERY_WINDOW = 10  # rounds averaged on each side of a drift
RECOVERY_FACTOR = 2.0  # recovered: the loss is back within 2x its pre-drift level
AFTER_DRIFT = 100  # rounds after a drift over which loss and traffic are summed
#: Time to accuracy: the simulated seconds until a variant's mean test accuracy first
#: reaches this share of the best final accuracy among the variants compared.
TIME_TO_ACCURACY = 0.9


@dataclass
class Comparison:
    """The results of every variant, and the table that compares them."""

    results: dict[str, Result]
    table: dict[str, np.ndarray]  # comparison.csv columns, one entry per variant
    out: Path | None

    def frame(self) -> Any:
        """The comparison table (comparison.csv, one row per variant) as a pandas
        DataFrame: booleans such as ``pareto_optimal`` as bool, counts as int64,
        measurements as float64 (NaN where there is none), names as strings. Needs
        pandas (``pip install 'gossamer[notebook]'``)."""
        return data_frame(self.table, "Comparison.frame", "comparison.table")


def comparison_table(results: Mapping[str, Result]) -> dict[str, np.ndarray]:
    """One row per variant: final quality, traffic and, with streams, cumulative loss."""
    rows = []
    for name, result in results.items():
        final, totals = result.final, result.totals
        row: dict[str, Any] = {
            "variant": name,
            "protocol": result.summary["protocol"],
            "test_accuracy_mean": final["test_accuracy_mean"],
            "avg_model_accuracy": final["avg_model_accuracy"],
            "messages": totals["messages"],
            "megabytes_sent": totals["bytes_sent"] / 1e6,
            "local_steps": totals["local_steps"],
            "energy_joules": totals["energy_joules"],
        }
        if "cumulative_prequential_loss" in final:
            row["cumulative_prequential_loss"] = final["cumulative_prequential_loss"]
            row["cumulative_prequential_error"] = final["cumulative_prequential_error"]
            for event in result.summary.get("drift", []):
                d = event["round"]
                loss = result.rounds["prequential_loss"]
                rounds = recovery_rounds(loss, d)
                row[f"recovery_rounds_drift_{d}"] = rounds if rounds is not None else math.nan
                after = slice(d - 1, d - 1 + AFTER_DRIFT)  # rounds d .. d + 99
                row[f"loss_after_drift_{d}"] = float(loss[after].sum())
                row[f"megabytes_after_drift_{d}"] = (
                    float(result.rounds["bytes_sent"][after].sum()) / 1e6
                )
        row["simulated_seconds"] = totals.get("simulated_seconds", math.nan)
        row["wall_seconds"] = result.summary["wall_seconds"]
        rows.append(row)
    target = TIME_TO_ACCURACY * max(row["test_accuracy_mean"] for row in rows)
    for row, result in zip(rows, results.values(), strict=True):
        row["seconds_to_target_accuracy"] = seconds_to_accuracy(result.metrics, target)
    for row, optimal in zip(rows, pareto_front(list(results.values())), strict=True):
        row["pareto_optimal"] = optimal
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows], dtype=object) for k in keys}


def seconds_to_accuracy(metrics: Mapping[str, np.ndarray], target: float) -> float:
    """Simulated seconds until the mean test accuracy first reached ``target`` (at an
    evaluated round); NaN if it never did or the run has no simulated time."""
    if "simulated_seconds" not in metrics:
        return math.nan
    reached = np.flatnonzero(np.asarray(metrics["test_accuracy_mean"], dtype=float) >= target)
    return float(metrics["simulated_seconds"][reached[0]]) if len(reached) else math.nan


def pareto_front(results: Sequence[Result]) -> list[bool]:
    """Whether each result is Pareto optimal over quality, bytes sent and energy used:
    quality is the cumulative prequential loss when every result has one (streams),
    else the final mean test accuracy (higher is better)."""
    finals, totals = [r.final for r in results], [r.totals for r in results]
    streams = all("cumulative_prequential_loss" in f for f in finals)
    quality = [
        f["cumulative_prequential_loss"] if streams else -f["test_accuracy_mean"] for f in finals
    ]
    traffic = [t["bytes_sent"] for t in totals]
    energy = [t["energy_joules"] for t in totals]
    return pareto_optimal(quality, traffic, energy)


def pareto_optimal(*objectives: Sequence[float]) -> list[bool]:
    """Whether each point is on the Pareto front of ``objectives`` (each a sequence
    over the points, lower is better): no other point is at most as high in every
    objective and lower in one. The comparison table uses (cumulative prequential
    loss with streams, else minus the final accuracy; MB sent; Joules)."""
    points = list(zip(*objectives, strict=True))
    return [
        not any(
            all(o <= p for o, p in zip(other, point, strict=True)) and other != point
            for other in points
        )
        for point in points
    ]


def recovery_rounds(
    loss: np.ndarray,
    drift_round: int,
    window: int = RECOVERY_WINDOW,
    factor: float = RECOVERY_FACTOR,
) -> int | None:
    """Rounds after a drift until the loss is back near its pre-drift level.

    ``loss[t - 1]`` is round t's prequential loss (summed over nodes). The baseline is
    the mean over the ``window`` rounds before the drift; the network has recovered at
    the first round r >= drift_round whose ``window``-round mean loss (rounds r ..
    r + window - 1) is at most ``factor x baseline``. Returns r - drift_round, or None
    if that never happens (or there are too few rounds before the drift to tell).
    """
    first = drift_round - 1  # index of the drift round
    if first < window:
        return None
    baseline = float(np.mean(loss[first - window : first]))
    for start in range(first, len(loss) - window + 1):
        if float(np.mean(loss[start : start + window])) <= factor * baseline:
            return start - first
    return None
