"""Plots of communication and of learning on streams: cumulative bytes against rounds,
cumulative prequential loss against bytes, and the loss around a concept drift."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.figures import (
    LOG_SPAN,
    Plot,
    axis_unit,
    finished,
    listed,
    moving_average,
    variant_colors,
)
from gossamer.report.tables import format_bytes
from gossamer.results import Result

SMOOTHING = 5  # rounds in the moving average of per-round losses


def _cumulative_bytes(
    results: Mapping[str, Result],
) -> tuple[dict[str, np.ndarray], bool, float, str]:
    """Each variant's cumulative bytes by round; whether an axis of them is logarithmic
    (the totals differ more than LOG_SPAN-fold); the axis unit's scale and name."""
    totals = {
        n: np.cumsum(np.asarray(r.rounds["bytes_sent"], dtype=float)) for n, r in results.items()
    }
    positive = [float(t[-1]) for t in totals.values() if t[-1] > 0]
    log = len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN
    scale, name = axis_unit(positive, "B")
    return totals, log, scale, name


def traffic_per_round(results: Mapping[str, Result], drifts: list[int]) -> Plot:
    """Cumulative bytes against rounds, from every round's record."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    totals, log, scale, name = _cumulative_bytes(results)
    for label, result in results.items():
        rounds, sent = result.rounds["round"], totals[label] / scale
        shown = sent > 0 if log else np.ones(len(sent), dtype=bool)
        ax.plot(rounds[shown], sent[shown], label=label, lw=1.2, color=colors[label])
    for d in drifts:
        ax.axvline(d, color="grey", linestyle="--", linewidth=0.8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("round")
    ax.set_ylabel(f"cumulative bytes sent ({name}" + (", log scale)" if log else ")"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    caption = [
        "Cumulative bytes sent by all nodes (and the coordinator) after every round, from "
        "each round's record: when each protocol communicates."
    ]
    if log:
        caption.append(
            "The totals differ more than 100-fold: logarithmic axis, rounds before the first "
            "byte and variants that send nothing are not on it."
        )
    for label, result in results.items():
        per_round = np.asarray(result.rounds["bytes_sent"], dtype=float)
        if len(per_round) > 1 and per_round[0] > 0 and np.all(per_round == per_round[0]):
            caption.append(f"{label} sent {format_bytes(per_round[0])} every round.")
    if drifts:
        caption.append(f"Grey dashed: concept drift at round {listed(drifts)}.")
    return Plot("communication_vs_rounds", "Communication over time", " ".join(caption), fig)


def prequential(results: Mapping[str, Result], by_bytes: bool) -> Plot:
    """Cumulative prequential loss against bytes (or rounds, when all send the same)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    sent, log, scale, name = _cumulative_bytes(results)
    log = by_bytes and log
    silent = []
    for label, result in results.items():
        loss = np.asarray(result.rounds["cumulative_prequential_loss"], dtype=float)
        if by_bytes and sent[label][-1] == 0:  # sends nothing: its final loss
            ax.axhline(
                loss[-1], color=colors[label], linestyle=":", label=f"{label} (sends nothing)"
            )
            silent.append(label)
            continue
        x = sent[label] / scale if by_bytes else np.asarray(result.rounds["round"], dtype=float)
        shown = x > 0 if log else np.ones(len(x), dtype=bool)
        ax.plot(x[shown], loss[shown], label=label, color=colors[label])
        ax.plot(x[-1], loss[-1], "o", color=colors[label])
    if log:
        ax.set_xscale("log")
    axis = f"cumulative bytes sent ({name}{', log scale' if log else ''})"
    ax.set_xlabel(axis if by_bytes else "round")
    ax.set_ylabel("cumulative prequential loss (sum over nodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    against = "communication" if by_bytes else "rounds"
    caption = [
        "The loss of each mini-batch before training on it, summed over nodes and rounds, "
        "after every round (every round is recorded); dot: the end of the run."
    ]
    if not by_bytes:
        caption.append("Every variant sent the same bytes, so it is drawn by round.")
    if log:
        caption.append(
            f"The totals differ more than {LOG_SPAN:.0f}-fold: logarithmic axis, rounds "
            "before the first byte are not on it."
        )
    if silent:
        caption.append(f"{', '.join(silent)} sent nothing: dotted, its final loss.")
    return Plot(
        f"prequential_loss_vs_{'bytes' if by_bytes else 'rounds'}",
        f"Cumulative prequential loss against {against}",
        " ".join(caption),
        fig,
    )


def loss_around_drift(results: Mapping[str, Result], drifts: list[int]) -> Plot:
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    whole, zoom = fig.subplots(1, 2)
    first = drifts[0]
    colors = variant_colors(results)
    for name, result in results.items():
        loss = moving_average(result.rounds["prequential_loss"], SMOOTHING)
        rounds = result.rounds["round"]
        whole.plot(rounds, loss, label=name, linewidth=1, color=colors[name])
        near = (rounds >= first - 40) & (rounds <= first + 80)
        zoom.plot(rounds[near], loss[near], label=name, linewidth=1, color=colors[name])
    for ax in (whole, zoom):
        for d in drifts:
            ax.axvline(d, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("round")
        ax.set_ylabel(f"prequential loss per round ({SMOOTHING}-round mean)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    whole.set_title("whole run (dashed: drift)")
    zoom.set_title(f"around the drift at round {first}")
    zoom.legend(fontsize="x-small", ncol=2)
    caption = (
        f"Prequential loss of every round (summed over nodes, trailing {SMOOTHING}-round mean, "
        f"log scale): the whole run, and rounds {first - 40} to {first + 80}; grey dashed: "
        f"concept drift at round {listed(drifts)}."
    )
    return Plot("loss_around_drift", "Loss around the drift", caption, fig)


#: Dynamic averaging's protocols, points of the trade-off: their marker and legend.
DYNAMIC = {"dynamic": ("o", "dynamic averaging"), "dynamic_gossip": ("^", "dynamic gossip")}


def loss_against_bytes(results: Mapping[str, Result]) -> Plot | None:
    """The trade-off of Kamp et al. (ECML-PKDD 2018): one point per finished variant, its
    final loss against the total bytes sent; periodic averaging's variants joined as a
    curve in order of bytes, dynamic averaging's as points. None unless the comparison
    holds both periodic and dynamic variants."""
    done = {n: r for n, r in results.items() if finished(r)}
    names = {n: r.config.protocol.name for n, r in done.items()}
    periodic = [n for n in done if names[n] == "periodic"]
    if not periodic or not any(names[n] in DYNAMIC for n in done):
        return None
    stream = all("cumulative_prequential_loss" in r.metrics for r in done.values())
    column = "cumulative_prequential_loss" if stream else "test_loss_mean"
    words = (
        "cumulative prequential loss (sum over nodes and rounds)"
        if stream
        else "final test loss (mean over nodes)"
    )
    loss = {n: float(r.metrics[column][-1]) for n, r in done.items()}
    sent = {n: float(r.metrics["bytes_sent"][-1]) for n, r in done.items()}
    positive = [b for b in sent.values() if b > 0]
    log = len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN
    scale, unit = axis_unit(positive, "B")
    colors = variant_colors(done)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    curve = sorted(periodic, key=lambda n: sent[n])
    ax.plot(
        [sent[n] / scale for n in curve],
        [loss[n] for n in curve],
        marker="s",
        color=colors[curve[-1]],
        label="periodic averaging",
    )
    drawn = set(curve)
    for protocol, (marker, legend) in DYNAMIC.items():
        points = [n for n in done if names[n] == protocol and sent[n] > 0]
        if points:
            ax.plot(
                [sent[n] / scale for n in points],
                [loss[n] for n in points],
                linestyle="none",
                marker=marker,
                color=colors[points[0]],
                label=legend,
            )
            drawn.update(points)
    silent = []
    for n in done:
        if n in drawn:
            continue
        if sent[n] == 0:
            ax.axhline(loss[n], color=colors[n], linestyle=":", label=f"{n} (sends nothing)")
            silent.append(n)
        else:
            ax.plot(sent[n] / scale, loss[n], marker="x", color=colors[n], label=n)
    for n in drawn:  # "periodic b=4" as "b=4": the legend says which protocol
        short = n.split(" ", 1)[1] if n.lower().startswith(f"{names[n]} ") else n
        ax.annotate(
            short,
            (sent[n] / scale, loss[n]),
            fontsize="xx-small",
            xytext=(3, 3),
            textcoords="offset points",
        )
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"total bytes sent ({unit}{', log scale' if log else ''})")
    ax.set_ylabel(words)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    caption = [
        f"One point per variant: its {words} against the bytes that all nodes (and the "
        "coordinator) sent over the run, as Kamp et al. (ECML-PKDD 2018) compare dynamic "
        "with periodic averaging: periodic variants joined in order of bytes (the curve "
        "the period traces), dynamic variants as points; a point below the curve reaches "
        "a lower loss for the same communication."
    ]
    if log:
        caption.append(f"The totals differ more than {LOG_SPAN:.0f}-fold: logarithmic axis.")
    if silent:
        caption.append(f"{', '.join(silent)} sent nothing: dotted, its loss.")
    left = [n for n in results if n not in done]
    if left:
        caption.append(f"Unfinished, not drawn: {', '.join(left)}.")
    return Plot("loss_vs_bytes_tradeoff", "Loss against communication", " ".join(caption), fig)
