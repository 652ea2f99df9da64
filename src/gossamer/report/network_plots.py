"""Plots of the network's conditions (churn, message loss): the nodes online and the
messages lost in every round."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.figures import Plot, listed, same_for_all, variant_colors
from gossamer.report.tables import format_number
from gossamer.results import Result

ROUND_COLUMNS = ("round", "online_nodes", "messages", "messages_lost")  # of rounds.csv


def network_conditions(results: Mapping[str, Result], drifts: list[int]) -> Plot | None:
    """Nodes online (top) and messages lost (bottom) in every round, one curve per
    variant, from rounds.csv; None unless a run has network conditions
    (``network.ideal`` false: churn or loss) and recorded both."""
    runs = {
        n: r
        for n, r in results.items()
        if not r.config.network.ideal and all(c in r.rounds for c in ROUND_COLUMNS)
    }
    if not runs:
        return None
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    online_ax, lost_ax = fig.subplots(2, 1, sharex=True)
    colors = variant_colors(runs)
    online = [(r.rounds["round"], r.rounds["online_nodes"]) for r in runs.values()]
    shared = same_for_all(online)  # the same availability draws: one curve says it all
    for label, result in runs.items():
        rounds = result.rounds["round"]
        if not shared or label == next(iter(runs)):
            name, color = ("every variant", "black") if shared else (label, colors[label])
            online_ax.plot(rounds, result.rounds["online_nodes"], lw=0.9, color=color, label=name)
        lost_ax.plot(
            rounds, result.rounds["messages_lost"], lw=0.9, color=colors[label], label=label
        )
    nodes = sorted({r.config.nodes for r in runs.values()})
    for n in nodes:
        online_ax.axhline(n, color="grey", linestyle="--", linewidth=0.8)
    for ax in (online_ax, lost_ax):
        for d in drifts:
            ax.axvline(d, color="grey", linestyle=":", linewidth=0.8)
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    online_ax.set_ylabel("nodes online")
    lost_ax.set_ylabel("messages lost")
    lost_ax.set_xlabel("round")
    online_ax.legend(fontsize="x-small", ncol=2)
    lost_ax.legend(fontsize="x-small", ncol=2)
    caption = [
        f"Nodes online in each round (top; grey dashed: all {listed(nodes)} nodes) and "
        "messages lost in each round (bottom: sent to an offline node or dropped by the "
        "network), from every round's record (rounds.csv's online_nodes and messages_lost)."
    ]
    if shared and len(runs) > 1:
        caption.append("Every variant had the same nodes online in every round: one curve.")
    for label, result in runs.items():
        sent, lost = int(result.rounds["messages"].sum()), int(result.rounds["messages_lost"].sum())
        share = f" ({100 * lost / sent:.1f}%)" if sent else ""
        online_share = np.mean(result.rounds["online_nodes"]) / result.config.nodes
        caption.append(
            f"{label}: {format_number(100 * online_share)}% of the nodes online on average, "
            f"{format_number(lost)} of {format_number(sent)} messages lost{share}."
        )
    if drifts:
        caption.append(f"Grey dotted: concept drift at round {listed(drifts)}.")
    return Plot(
        "network_conditions", "Online nodes and lost messages per round", " ".join(caption), fig
    )
