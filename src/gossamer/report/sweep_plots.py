"""Plots of a sweep: each final metric against the grid's values, and every point's
learning curve as the mean over seeds with a 95% band. Labels in words; a metric
that is the same at every point is not drawn (the report says its value)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.figures import Plot, axis_unit, curve_band, cycle_end, cycle_rounds
from gossamer.report.tables import format_bytes, format_energy, format_number
from gossamer.results import Result
from gossamer.results.sweep import METRICS as SWEEP_METRICS

#: Each sweep.csv metric in words, its unit and its factor to that unit.
METRIC_WORDS = {
    "test_accuracy_mean": ("final test accuracy (mean over nodes)", "", 1.0),
    "avg_model_accuracy": ("final accuracy of the average model", "", 1.0),
    "megabytes_sent": ("bytes sent by all nodes", "B", 1e6),
    "energy_joules": ("energy used by all nodes", "J", 1.0),
    "cumulative_prequential_loss": ("cumulative prequential loss", "", 1.0),
}
#: Grid keys in words (others: their last part, underscores as spaces).
KEY_WORDS = {
    "optimizer.lr": "learning rate",
    "optimizer.momentum": "momentum",
    "optimizer.weight_decay": "weight decay",
    "local_steps": "local steps per round",
    "data.batch_size": "batch size",
    "data.alpha": "Dirichlet alpha",
    "protocol.delta": "divergence threshold delta",
    "protocol.period": "period (rounds)",
    "protocol.train_rounds": "training rounds per cycle",
    "protocol.sync_rounds": "sync rounds per cycle",
    "topology.degree": "degree",
    "model.hidden": "hidden layers",
}


def key_words(key: str) -> str:
    """A grid key in words: ``key_words("optimizer.lr") == "learning rate"``."""
    return KEY_WORDS.get(key, key.rsplit(".", 1)[-1].replace("_", " "))


def point_words(point: Mapping[str, Any]) -> str:
    """A sweep point in words: ``learning rate 0.05, protocol dpsgd``."""
    if not point:
        return "base"
    return ", ".join(f"{key_words(k)} {grid_value(v)}" for k, v in point.items())


def grid_value(value: Any) -> str:
    """A grid value as the grid gave it (``0.05``, ``dpsgd``, ``[64, 32]``)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)  # sweep.csv holds grid values as JSON
        except json.JSONDecodeError:
            return value
    return value if isinstance(value, str) else json.dumps(value)  # as the grid gave it


def sweep_figures(table: Mapping[str, np.ndarray], keys: Sequence[str]) -> list[Plot]:
    """With one grid key: each metric's mean and 95% interval over seeds against the
    key's values (stem ``sweep_<metric>``); a metric equal at every point comes back
    with ``figure=None`` and its value in the caption. With several keys, none (the
    table says it)."""
    if len(keys) != 1:
        return []
    key = keys[0]
    labels = [grid_value(v) for v in table[key]]
    made = []
    for metric in SWEEP_METRICS:
        if metric not in table:
            continue
        words, unit, factor = METRIC_WORDS[metric]
        mean = np.asarray(table[metric], dtype=float) * factor
        low = np.asarray(table[f"{metric}_ci_low"], dtype=float) * factor
        high = np.asarray(table[f"{metric}_ci_high"], dtype=float) * factor
        title = f"{words[0].upper()}{words[1:]} against {key_words(key)}"
        if (
            len(mean) > 1
            and np.allclose(mean, mean[0], rtol=1e-9, atol=0)
            and not (high - low > 0).any()
        ):
            shown = {"B": format_bytes, "J": format_energy}.get(unit, format_number)(mean[0])
            made.append(
                Plot(
                    f"sweep_{metric}",
                    f"{title}: not drawn",
                    f"The {words}: {shown} at every point and seed (a flat line, not drawn).",
                    None,
                )
            )
            continue
        scale, name = axis_unit(mean, unit) if unit else (1.0, "")
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        error = np.nan_to_num(np.stack([mean - low, high - mean]) / scale)
        ax.errorbar(  # grid values are categories: points, no line between them
            range(len(mean)), mean / scale, yerr=error, marker="o", linestyle="none", capsize=4
        )
        ax.set_xticks(range(len(mean)), labels)
        ax.set_xlabel(f"{key_words(key)} ({key})" if key_words(key) != key else key)
        ax.set_ylabel(words + (f" ({name})" if name else ""))
        ax.grid(alpha=0.3)
        seeds = int(np.max(np.asarray(table["seeds"], dtype=float)))
        interval = (
            "bars: 95% Student-t interval over seeds, mean +- t(0.975, S-1) sd / sqrt(S)"
            if seeds > 1
            else "one seed, so no interval"
        )
        caption = f"The {words} at each value of {key}: dots, the mean over seeds; {interval}."
        made.append(Plot(f"sweep_{metric}", title, caption, fig))
    return made


def sweep_curves(
    points: Sequence[Mapping[str, Any]], runs: Mapping[tuple[int, int], Result]
) -> list[Plot]:
    """Every point's learning curve (mean test accuracy over nodes against rounds): the
    mean over its seeds, with the 95% Student-t band over seeds at every evaluation."""
    by_point: dict[int, list[Result]] = {}
    for (index, _), result in sorted(runs.items()):
        if len(result.metrics.get("round", ())):
            by_point.setdefault(index, []).append(result)
    if not by_point:
        return []
    from matplotlib import colormaps

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    palette = colormaps["tab10" if len(by_point) <= 10 else "viridis"]
    keys = list(dict.fromkeys(k for point in points for k in point))
    # labels name what differs between points; one point: everything
    varying = [k for k in keys if len({json.dumps(p.get(k)) for p in points}) > 1] or keys
    shared = {k: points[0][k] for k in keys if k not in varying and k in points[0]}
    seeds, aligned = set(), []
    for k, (index, results) in enumerate(by_point.items()):
        color = palette(k % 10) if len(by_point) <= 10 else palette(k / max(len(by_point) - 1, 1))
        common = set(results[0].metrics["round"].tolist())
        for result in results[1:]:
            common &= set(result.metrics["round"].tolist())
        rounds = np.array(sorted(common), dtype=np.int64)
        curves = np.stack(
            [r.metrics["test_accuracy_mean"][np.isin(r.metrics["round"], rounds)] for r in results]
        )  # (S, R)
        mean, low, high = curve_band(curves)
        cycle = cycle_rounds(results[0])
        joined = cycle_end(rounds, cycle)
        if cycle > 1 and joined.sum() >= 2 and not joined.all():
            aligned.append((point_words(points[index]), cycle))
        else:
            joined = np.ones(len(rounds), dtype=bool)
        shown = {k: points[index][k] for k in varying if k in points[index]}
        label = f"{point_words(shown)} ({len(results)} seed{'s' * (len(results) > 1)})"
        ax.plot(rounds[joined], mean[joined], marker=".", color=color, label=label)
        if len(results) > 1:
            ax.fill_between(rounds[joined], low[joined], high[joined], color=color, alpha=0.2)
        if not joined.all():
            ax.plot(
                rounds[~joined],
                mean[~joined],
                "o",
                markerfacecolor="none",
                markersize=3.5,
                color=color,
            )
        seeds.add(len(results))
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (mean over nodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=1 if len(by_point) > 8 else 2)
    caption = [
        "Mean test accuracy over nodes at each evaluation, averaged over the seeds of each "
        "point (lines join measured evaluations only)."
    ]
    if shared and varying:
        caption.append(f"Every point has {point_words(shared)}.")
    if max(seeds) > 1:
        caption.append(
            "Band: the 95% Student-t interval over seeds at each evaluation, "
            "mean +- t(0.975, S-1) x sd / sqrt(S), S seeds."
        )
    else:
        caption.append("One seed per point: no band.")
    for words, cycle in aligned:
        caption.append(
            f"{words}: joined at the end of each {cycle}-round cycle, so that points are "
            "compared at the same phase; hollow dots: evaluations mid-cycle."
        )
    return [Plot("sweep_accuracy_curves", "Learning curves over seeds", " ".join(caption), fig)]
