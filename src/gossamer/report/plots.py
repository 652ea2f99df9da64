"""Plots of runs and comparisons (matplotlib's object API: no pyplot, no global state).

Honest by construction:

- a curve joins measured evaluations only; no point is made up (not even one at
  zero bytes) and a logarithmic axis leaves out what it cannot show, saying so;
- where a protocol runs in cycles (SkipTrain's train and sync rounds, the period of
  periodic and dynamic averaging: ``protocol.cycle_rounds``) its curve joins the
  evaluations at the end of its cycles and shows the others as hollow dots, so that
  protocols are compared at the same phase and curves do not zig-zag;
- curves break at a concept drift;
- a plot against a quantity every variant has in common (SkipTrain and D-PSGD send the
  same bytes every round) is left out, and the report says so;
- every plot has a caption saying what is drawn and how its points were chosen.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.distributions import label_distribution, node_accuracy, topology
from gossamer.report.figures import (
    LOG_SPAN,
    Cycles,
    Plot,
    axis_unit,
    draw_interval,
    drift_rounds,
    listed,
    same_for_all,
    sampling_caption,
    segments,
    time_unit,
    variant_colors,
)
from gossamer.report.network_plots import network_conditions
from gossamer.report.node_plots import accuracy_spread, consensus, draw_spread
from gossamer.report.tables import format_bytes, format_energy, format_number
from gossamer.report.traffic_plots import (
    loss_against_bytes,
    loss_around_drift,
    prequential,
    traffic_per_round,
)
from gossamer.results import Result

MEASURED = (
    "Each dot is a measured evaluation; lines join consecutive evaluations and "
    "nothing between them is drawn."
)
#: Per x axis: its metrics.csv column, unit, words, and the title's words.
AXES = {
    "rounds": ("round", "", "rounds", "rounds"),
    "bytes": ("bytes_sent", "B", "cumulative bytes sent by all nodes", "communication"),
    "energy": ("energy_joules", "J", "cumulative energy of all nodes", "energy"),
    "time": ("simulated_seconds", "s", "simulated time", "simulated time"),
}


def comparison_figures(results: Mapping[str, Result]) -> list[Plot]:
    """The plots comparing runs, chosen by what the runs recorded and by what differs
    between them; a plot left out comes back with ``figure=None`` and a caption that
    says why."""
    if not results:
        return []
    drifts = drift_rounds(results)
    plots = [_accuracy_plot(results, "rounds", drifts)]
    per_round = {n: r for n, r in results.items() if len(r.rounds.get("round", ()))}
    same = {axis: _shared(results, axis) for axis in ("bytes", "energy", "time")}
    if same["bytes"]:
        plots.append(_left_out(results, "bytes"))
    else:
        plots.append(_accuracy_plot(results, "bytes", drifts))
        if per_round:
            plots.append(traffic_per_round(per_round, drifts))
    if all(_last(r.metrics, "simulated_seconds") > 0 for r in results.values()):
        plots.append(
            _left_out(results, "time") if same["time"] else _accuracy_plot(results, "time", drifts)
        )
    if any(_last(r.metrics, "energy_joules") > 0 for r in results.values()):
        plots.append(
            _left_out(results, "energy")
            if same["energy"]
            else _accuracy_plot(results, "energy", drifts)
        )
    if per_round and all("cumulative_prequential_loss" in r.rounds for r in per_round.values()):
        plots.append(prequential(per_round, by_bytes=not same["bytes"]))
        if drifts:
            plots.append(loss_around_drift(per_round, drifts))
    optional = (
        loss_against_bytes(results),
        accuracy_spread(results, drifts) if len(results) > 1 else None,  # one run: its band
        consensus(results, drifts),
        network_conditions(per_round, drifts),
    )
    return plots + [plot for plot in optional if plot is not None]


def run_figures(result: Result, edges: dict | None = None) -> list[Plot]:
    """The plots of one run, from what it recorded."""
    one = {_name(result): result}
    plots = [_accuracy_band(result)]
    plots += [p for p in comparison_figures(one) if p.stem != "accuracy_vs_rounds"]
    if "test_accuracy" in result.nodes:
        caption = (
            "How many nodes reached each final test accuracy (each node's own model on the "
            "common test set, at the final evaluation); dashed: the mean."
        )
        figure = node_accuracy(result.nodes["test_accuracy"])
        plots.append(Plot("node_accuracy", "Per-node accuracy distribution", caption, figure))
    if edges:
        nodes = result.config.nodes
        caption = "The graph (spring layout); nodes coloured by their final test accuracy."
        if nodes > 1000:
            caption = "The degree distribution of the graph (too many nodes to draw)."
        figure = topology(edges, nodes, result.nodes.get("test_accuracy"))
        plots.append(Plot("topology", "Topology", caption, figure))
    if result.label_counts is not None:
        caption = "Training samples of each class that every node holds."
        figure = label_distribution(result.label_counts)
        plots.append(Plot("label_distribution", "Label distribution over nodes", caption, figure))
    return plots


def _name(result: Result) -> str:
    return result.run_dir.name if result.run_dir else "run"


def _last(columns: dict, key: str) -> float:
    values = columns.get(key)
    return float(values[-1]) if values is not None and len(values) else 0.0


def _shared(results: Mapping[str, Result], axis: str) -> bool:
    column = AXES[axis][0]
    if not all(column in r.metrics for r in results.values()):
        return False
    return same_for_all([(r.metrics["round"], r.metrics[column]) for r in results.values()])


def _left_out(results: Mapping[str, Result], axis: str) -> Plot:
    """The note that replaces a plot against a quantity all variants share."""
    column, unit, words, title = AXES[axis]
    total = _last(next(iter(results.values())).metrics, column)
    shown = {"B": format_bytes, "J": format_energy}.get(unit, lambda s: f"{format_number(s)} s")
    return Plot(
        f"accuracy_vs_{axis}",
        f"Test accuracy against {title}: not drawn",
        f"Every variant has the same {words} at every evaluation ({shown(total)} in all): "
        f"accuracy against {title} would repeat accuracy against rounds on another scale.",
        None,
    )


def _accuracy_plot(results: Mapping[str, Result], axis: str, drifts: list[int]) -> Plot:
    """Mean test accuracy over nodes against rounds, bytes, energy or simulated time."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    column, unit, words, title = AXES[axis]
    totals = [_last(r.metrics, column) for r in results.values()]
    positive = [t for t in totals if t > 0]
    log = axis == "bytes" and len(positive) > 1 and max(positive) / min(positive) > LOG_SPAN
    scale, name = time_unit(totals) if axis == "time" else axis_unit(totals, unit)
    cycles, silent = Cycles(), []
    copies = _copies(results, column)
    for label, result in results.items():
        m = result.metrics
        x = np.asarray(m[column], dtype=float) / scale
        y = np.asarray(m["test_accuracy_mean"], dtype=float)
        # a curve equal to one drawn before: dashed over it, and the legend says so
        name_shown = f"{label} (= {copies[label]})" if label in copies else label
        if axis == "bytes" and _last(m, column) == 0:  # sends nothing: its final accuracy
            ax.axhline(y[-1], color=colors[label], linestyle=":", label=f"{label} (sends nothing)")
            silent.append(label)
            continue
        shown = x > 0 if log else np.ones(len(x), dtype=bool)
        joined = cycles.joined(label, result)
        style = (0, (3, 3)) if label in copies else "-"
        _draw(
            ax,
            x,
            y,
            m["round"],
            (shown & joined, shown & ~joined),
            drifts,
            colors[label],
            name_shown,
            style,
        )
        draw_interval(ax, x, result, shown & joined, drifts, colors[label])
    if axis == "rounds":
        for d in drifts:
            ax.axvline(d, color="grey", linestyle="--", linewidth=0.8)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(f"{words}" + (f" ({name})" if name else "") + (", log scale" if log else ""))
    ax.set_ylabel("test accuracy (mean over nodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    caption = [f"Mean test accuracy over nodes against {words}.", MEASURED]
    if log:
        caption.append(
            f"The variants' totals differ more than {LOG_SPAN:.0f}-fold, so the axis is "
            "logarithmic; evaluations before the first byte was sent (round 0) are not on it."
        )
    if silent:
        caption.append(f"{', '.join(silent)} sent nothing: dotted, its final accuracy.")
    caption += cycles.caption()
    if sampling := sampling_caption(results):
        caption.append(sampling)
    if copies:
        same = "; ".join(f"{label} = {original}" for label, original in copies.items())
        caption.append(f"Equal curves, drawn dashed over each other: {same}.")
    if drifts:
        where = " (grey dashed)" if axis == "rounds" else ""
        caption.append(f"Concept drift at round {listed(drifts)}{where}: curves break there.")
    return Plot(f"accuracy_vs_{axis}", f"Test accuracy against {title}", " ".join(caption), fig)


def _copies(results: Mapping[str, Result], column: str) -> dict[str, str]:
    """Variants whose accuracy against ``column`` equals an earlier variant's, with
    that variant's name (e.g. Greedy = D-PSGD while no budget runs out)."""
    copies: dict[str, str] = {}
    seen: list[tuple[str, Result]] = []
    for label, result in results.items():
        for original, other in seen:
            if all(
                np.array_equal(result.metrics[k], other.metrics[k])
                for k in ("round", column, "test_accuracy_mean")
            ):
                copies[label] = original
                break
        else:
            seen.append((label, result))
    return copies


def _draw(ax, x, y, rounds, masks, drifts, color, label, style="-") -> None:
    """One variant: the evaluations it joins (``masks[0]``) as a line broken at
    drifts, the others (``masks[1]``) as hollow dots."""
    joined, apart = masks
    first = True
    for part in segments(rounds, drifts):
        keep = part[joined[part]]
        if len(keep):
            label_first = label if first else None
            ax.plot(x[keep], y[keep], marker=".", linestyle=style, color=color, label=label_first)
            first = False
    if apart.any():
        ax.plot(
            x[apart],
            y[apart],
            linestyle="none",
            marker="o",
            markersize=3.5,
            markerfacecolor="none",
            color=color,
            alpha=0.7,
        )


def _accuracy_band(result: Result) -> Plot:
    """One run's accuracy: mean over nodes, min-max band, and the average model."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    m = result.metrics
    cycles = Cycles()
    joined = cycles.joined(_name(result), result)
    drifts = [int(e["round"]) for e in result.summary.get("drift", [])]
    rounds = m["round"]
    draw_spread(ax, result, joined, drifts, "tab:blue")
    for k, part in enumerate(segments(rounds, drifts)):
        keep = part[joined[part]]
        ax.plot(
            rounds[keep],
            m["avg_model_accuracy"][keep],
            linestyle="--",
            color="tab:orange",
            label="average model" if k == 0 else None,
        )
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    caption = [
        "Test accuracy of every node's own model at each evaluation: the mean over nodes "
        "(dots), the range from the worst to the best node (band) and the accuracy of the "
        "network's average model (dashed).",
        MEASURED,
        *cycles.caption(),
    ]
    if sampling := sampling_caption({_name(result): result}):
        caption += [sampling, "The min and max are over the nodes each evaluation measured."]
    if drifts:
        caption.append(f"Concept drift at round {listed(drifts)} (grey dashed): curves break.")
    return Plot("accuracy", "Test accuracy against rounds", " ".join(caption), fig)
