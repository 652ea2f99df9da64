"""Plots of how far apart the nodes are: the spread of their accuracy (worst to best
node) and the consensus distance of their models, over rounds."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.figures import (
    LOG_SPAN,
    Cycles,
    Plot,
    draw_interval,
    listed,
    sampled_rows,
    sampling_caption,
    segments,
    variant_colors,
)
from gossamer.results import Result

PANELS_PER_ROW = 4  # small multiples of the spread plot


def draw_spread(ax, result: Result, joined: np.ndarray, drifts: list[int], color) -> None:
    """One run's accuracy against rounds on ``ax``: the mean over nodes (dots, joined at
    ``joined``, broken at drifts), the range from the worst to the best node (band) and,
    for sampled evaluations, the mean's 95% interval (darker band); the evaluations not
    joined are hollow dots."""
    m = result.metrics
    rounds = np.asarray(m["round"])
    for k, part in enumerate(segments(rounds, drifts)):
        keep = part[joined[part]]
        first = k == 0
        ax.fill_between(
            rounds[keep],
            m["test_accuracy_min"][keep],
            m["test_accuracy_max"][keep],
            color=color,
            alpha=0.25,
            linewidth=0,
            label="nodes: min to max" if first else None,
        )
        ax.plot(
            rounds[keep],
            m["test_accuracy_mean"][keep],
            marker=".",
            color=color,
            label="nodes: mean" if first else None,
        )
    draw_interval(ax, rounds, result, joined, drifts, "black", "mean: 95% interval")
    if not joined.all():
        ax.plot(
            rounds[~joined],
            m["test_accuracy_mean"][~joined],
            linestyle="none",
            marker="o",
            markersize=3.5,
            markerfacecolor="none",
            color=color,
            label="nodes: mean, mid-cycle",
        )
    for d in drifts:
        ax.axvline(d, color="grey", linestyle="--", linewidth=0.8)


def accuracy_spread(results: Mapping[str, Result], drifts: list[int]) -> Plot | None:
    """Each variant's mean accuracy and the range from its worst to its best node,
    one panel per variant (shared axes); None when no run recorded the range."""
    spread = {n: r for n, r in results.items() if "test_accuracy_min" in r.metrics}
    if not spread:
        return None
    title = "Per-node accuracy spread"
    width = {
        n: np.asarray(r.metrics["test_accuracy_max"]) - np.asarray(r.metrics["test_accuracy_min"])
        for n, r in spread.items()
    }
    if all(np.all(w == 0) for w in width.values()):
        return Plot(
            "accuracy_spread",
            f"{title}: not drawn",
            "Every node had the same test accuracy at every evaluation of every variant "
            "(min = max): there is no spread to draw.",
            None,
        )
    columns = min(PANELS_PER_ROW, len(spread))
    rows = math.ceil(len(spread) / columns)
    fig = Figure(figsize=(2.9 * columns, 2.4 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    colors = variant_colors(spread)
    cycles = Cycles()
    for ax, (label, result) in zip(axes, spread.items(), strict=False):
        draw_spread(ax, result, cycles.joined(label, result), drifts, colors[label])
        ax.set_title(label, fontsize="small")
        ax.grid(alpha=0.3)
    for ax in axes[len(spread) :]:
        ax.set_axis_off()
    for ax in axes[::columns]:
        ax.set_ylabel("test accuracy")
    for ax in axes[(rows - 1) * columns :]:
        ax.set_xlabel("round")
    axes[0].legend(fontsize="xx-small")
    caption = [
        "Test accuracy of every node's own model at each evaluation, one panel per "
        "variant: the mean over nodes (dots) and the range from the worst to the best node "
        "(band), so how evenly a protocol serves its nodes can be compared.",
        "Each dot is a measured evaluation; nothing between evaluations is drawn.",
        *cycles.caption(),
    ]
    if any(sampled_rows(r).any() for r in spread.values()):
        caption.append(sampling_caption(spread))
        caption.append("The min and max are over the nodes each evaluation measured.")
    if drifts:
        caption.append(f"Concept drift at round {listed(drifts)} (grey dashed): curves break.")
    return Plot("accuracy_spread", title, " ".join(caption), fig)


def consensus(results: Mapping[str, Result], drifts: list[int]) -> Plot | None:
    """The consensus distance ``mean_i ||x_i - x_bar||^2`` against rounds, one curve per
    variant; None when no run recorded it."""
    recorded = {n: r for n, r in results.items() if "consensus_distance" in r.metrics}
    if not recorded:
        return None
    title = "Consensus distance against rounds"
    values = {n: np.asarray(r.metrics["consensus_distance"], float) for n, r in recorded.items()}
    positive = np.concatenate([v[v > 0] for v in values.values()])
    if not len(positive):
        return Plot(
            "consensus_distance",
            f"{title}: not drawn",
            "Every node held the same model at every evaluation (consensus distance 0).",
            None,
        )
    log = positive.max() / positive.min() > LOG_SPAN
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(recorded)
    cycles = Cycles()
    for label, result in recorded.items():
        rounds = np.asarray(result.metrics["round"])
        distance = values[label]
        shown = distance > 0 if log else np.ones(len(distance), dtype=bool)
        at_end = cycles.joined(label, result)
        joined = at_end & shown
        first = True
        for part in segments(rounds, drifts):
            keep = part[joined[part]]
            if len(keep):
                ax.plot(
                    rounds[keep],
                    distance[keep],
                    marker=".",
                    color=colors[label],
                    label=label if first else None,
                )
                first = False
        apart = shown & ~at_end
        if apart.any():
            ax.plot(
                rounds[apart],
                distance[apart],
                linestyle="none",
                marker="o",
                markersize=3.5,
                markerfacecolor="none",
                color=colors[label],
            )
    for d in drifts:
        ax.axvline(d, color="grey", linestyle="--", linewidth=0.8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel("consensus distance" + (" (log scale)" if log else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    caption = [
        "How far the nodes' models are from their average at each evaluation: the mean "
        "over nodes of the squared distance to the average model, mean_i ||x_i - x_bar||^2 "
        "(metrics.csv's consensus_distance; 0 when every node holds the same model).",
        "Each dot is a measured evaluation; nothing between evaluations is drawn.",
    ]
    if log:
        caption.append(
            f"The distances differ more than {LOG_SPAN:.0f}-fold, so the axis is logarithmic; "
            "evaluations at distance 0 (the common initial model at round 0, right after a "
            "full synchronization) are not on it."
        )
    caption += cycles.caption()
    if drifts:
        caption.append(f"Concept drift at round {listed(drifts)} (grey dashed): curves break.")
    return Plot("consensus_distance", title, " ".join(caption), fig)
