"""Plots of runs and comparisons (matplotlib's object API: no pyplot, no global state)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from gossamer.results import Result
from gossamer.results.sweep import METRICS as SWEEP_METRICS

SMOOTHING = 5  # rounds in the moving average of per-round losses


def comparison_figures(results: Mapping[str, Result]) -> list[tuple[str, str, Figure]]:
    """The plots comparing runs: (file stem, title, figure) each, for the data they have
    (a run stopped before its first checkpoint has metrics but no per-round records)."""
    if not results:
        return []
    figures = [
        ("accuracy_vs_rounds", "Test accuracy against rounds", _accuracy_vs(results, "rounds")),
        (
            "accuracy_vs_bytes",
            "Test accuracy against communication",
            _accuracy_vs(results, "bytes"),
        ),
    ]
    per_round = {n: r for n, r in results.items() if len(r.rounds.get("round", ()))}
    if per_round:
        figures.append(
            ("communication_vs_rounds", "Communication over time", _traffic_per_round(per_round))
        )
    if all(_last(r.metrics, "simulated_seconds") > 0 for r in results.values()):
        figures.append(
            (
                "accuracy_vs_time",
                "Test accuracy against simulated time",
                _accuracy_vs(results, "time"),
            )
        )
    if any(_last(r.metrics, "energy_joules") > 0 for r in results.values()):
        figures.append(
            ("accuracy_vs_energy", "Test accuracy against energy", _accuracy_vs(results, "energy"))
        )
    if per_round and all("cumulative_prequential_loss" in r.rounds for r in per_round.values()):
        figures.append(
            (
                "prequential_loss_vs_bytes",
                "Cumulative prequential loss against communication",
                _prequential_vs_bytes(per_round),
            )
        )
        drifts = [e["round"] for e in next(iter(per_round.values())).summary.get("drift", [])]
        if drifts:
            figures.append(
                (
                    "loss_around_drift",
                    "Loss around the drift",
                    _loss_around_drift(per_round, drifts),
                )
            )
    return figures


def _last(columns: dict, key: str) -> float:
    values = columns.get(key)
    return float(values[-1]) if values is not None and len(values) else 0.0


def run_figures(result: Result, edges: dict | None = None) -> list[tuple[str, str, Figure]]:
    """The plots of one run, from what it recorded."""
    one = {result.run_dir.name if result.run_dir else "run": result}
    figures = [("accuracy", "Test accuracy against rounds", _accuracy_band(result))]
    figures += [f for f in comparison_figures(one) if f[0] not in ("accuracy_vs_rounds",)]
    if "test_accuracy" in result.nodes:
        figures.append(
            (
                "node_accuracy",
                "Per-node accuracy distribution",
                _node_accuracy(result.nodes["test_accuracy"]),
            )
        )
    if edges:
        accuracy = result.nodes.get("test_accuracy")
        figures.append(("topology", "Topology", _topology(edges, result.config.nodes, accuracy)))
    if result.label_counts is not None:
        figures.append(
            (
                "label_distribution",
                "Label distribution over nodes",
                label_distribution(result.label_counts),
            )
        )
    return figures


def comparison_plots(out: Path, results: Mapping[str, Result]) -> list[str]:
    """Write the comparison's plots into ``out``; returns their file names."""
    return [save_figure(fig, out / f"{stem}.png") for stem, _, fig in comparison_figures(results)]


def _accuracy_band(result: Result) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    m = result.metrics
    ax.fill_between(
        m["round"],
        m["test_accuracy_min"],
        m["test_accuracy_max"],
        alpha=0.25,
        label="nodes: min to max",
    )
    ax.plot(m["round"], m["test_accuracy_mean"], marker=".", label="nodes: mean")
    ax.plot(m["round"], m["avg_model_accuracy"], linestyle="--", label="average model")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _node_accuracy(accuracy: np.ndarray) -> Figure:
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.hist(accuracy, bins=min(30, max(5, len(accuracy) // 4)), edgecolor="white")
    ax.axvline(
        float(np.mean(accuracy)),
        color="black",
        linestyle="--",
        linewidth=1,
        label=f"mean {np.mean(accuracy):.3f}",
    )
    ax.set_xlabel("final test accuracy of a node")
    ax.set_ylabel("nodes")
    ax.legend(fontsize="small")
    return fig


def _topology(edges: dict, nodes: int, accuracy: np.ndarray | None) -> Figure:
    import networkx as nx

    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.subplots()
    graph = nx.Graph()
    graph.add_nodes_from(range(nodes))
    graph.add_edges_from(zip(edges["u"].tolist(), edges["v"].tolist(), strict=True))
    if nodes > 1000:  # too many to draw legibly: the degree distribution
        degrees = [d for _, d in graph.degree()]
        ax.hist(degrees, bins=30)
        ax.set_xlabel("degree")
        ax.set_ylabel("nodes")
        return fig
    position = nx.spring_layout(graph, seed=0, iterations=50)
    xy = np.array([position[i] for i in range(nodes)])
    segments = xy[np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)]  # (E, 2, 2)
    ax.add_collection(LineCollection(segments, colors="grey", linewidths=0.4, alpha=0.5, zorder=1))
    size = max(8, 400 / np.sqrt(nodes))
    if accuracy is not None and len(accuracy) == nodes:
        points = ax.scatter(*xy.T, c=accuracy, s=size, cmap="viridis", zorder=2)
        fig.colorbar(points, ax=ax, label="final test accuracy", shrink=0.7)
    else:
        ax.scatter(*xy.T, color="tab:blue", s=size, zorder=2)
    ax.set_title(f"{nodes} nodes, {graph.number_of_edges()} edges")
    ax.set_axis_off()
    return fig


def _accuracy_vs(results: Mapping[str, Result], axis: str) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    for name, result in results.items():
        m = result.metrics
        x = {
            "bytes": m["bytes_sent"] / 1e6,
            "rounds": m["round"],
            "energy": m["energy_joules"] / 1e3,
            "time": m.get("simulated_seconds", m["round"]) / 60,
        }[axis]
        ax.plot(x, m["test_accuracy_mean"], marker=".", label=name, color=colors[name])
    if axis == "bytes":
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("cumulative MB sent (symlog)")
    elif axis == "energy":
        ax.set_xlabel("cumulative energy of all nodes (kJ)")
    elif axis == "time":
        ax.set_xlabel("simulated time (minutes)")
    else:
        ax.set_xlabel("round")
    ax.set_ylabel("test accuracy (mean over nodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def _traffic_per_round(results: Mapping[str, Result]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    for name, result in results.items():
        r = result.rounds
        ax.plot(
            r["round"], np.cumsum(r["bytes_sent"]) / 1e6, label=name, lw=1.2, color=colors[name]
        )
    for event in next(iter(results.values())).summary.get("drift", []):
        ax.axvline(event["round"], color="grey", linestyle="--", linewidth=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative MB sent (symlog)")
    ax.set_title("when the protocols communicate (dashed: drift)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def variant_colors(results: Mapping[str, Result]) -> dict[str, tuple]:
    """One colour family per protocol, shaded from dark to light across its variants."""
    from matplotlib import colormaps

    families = ["Blues", "Oranges", "Greens", "Purples", "Reds", "Greys"]
    by_protocol: dict[str, list[str]] = {}
    for name, result in results.items():
        by_protocol.setdefault(result.config.protocol.name, []).append(name)
    colors = {}
    for family, names in zip(families * 4, by_protocol.values(), strict=False):
        shades = np.linspace(0.9, 0.45, len(names)) if len(names) > 1 else [0.75]
        for name, shade in zip(names, shades, strict=True):
            colors[name] = colormaps[family](shade)
    return colors


def _prequential_vs_bytes(results: Mapping[str, Result]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    colors = variant_colors(results)
    for name, result in results.items():
        r = result.rounds
        megabytes = np.cumsum(r["bytes_sent"]) / 1e6
        ax.plot(megabytes, r["cumulative_prequential_loss"], label=name, color=colors[name])
        ax.plot(megabytes[-1], r["cumulative_prequential_loss"][-1], "o", color=colors[name])
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("cumulative MB sent (symlog)")
    ax.set_ylabel("cumulative prequential loss (sum over nodes)")
    ax.set_title("cumulative loss against communication (dot: end of run)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def _loss_around_drift(results: Mapping[str, Result], drifts: list[int]) -> Figure:
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
    return fig


def label_distribution(counts: np.ndarray) -> Figure:
    """Stacked bars: how many training samples of each class every node holds."""
    from matplotlib import colormaps

    nodes, classes = counts.shape
    fig = Figure(figsize=(max(6.0, min(14.0, 0.12 * nodes + 3)), 4), layout="constrained")
    ax = fig.subplots()
    colors = colormaps["tab20" if classes > 10 else "tab10"]
    palette = [colors(c % colors.N) for c in range(classes)]
    if nodes <= 64:  # one bar per node
        bottom = np.zeros(nodes)
        for c in range(classes):
            ax.bar(
                np.arange(nodes),
                counts[:, c],
                bottom=bottom,
                width=1.0,
                color=palette[c],
                label=str(c),
                edgecolor="white",
                linewidth=0.3,
            )
            bottom += counts[:, c]
    else:  # many nodes: one filled band per class (steps), cheap to draw
        steps = np.repeat(np.arange(nodes + 1) - 0.5, 2)[1:-1]
        ax.stackplot(
            steps,
            np.repeat(counts.T, 2, axis=1),
            colors=palette,
            labels=[str(c) for c in range(classes)],
            linewidth=0,
        )
    ax.set_xlim(-0.5, nodes - 0.5)
    ax.set_xlabel("node")
    ax.set_ylabel("training samples")
    ax.set_title("label distribution over nodes")
    if classes <= 20:
        ax.legend(
            title="class", fontsize="x-small", ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0)
        )
    return fig


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def save_figure(fig: Figure, path: Path) -> str:
    """Write a PNG atomically (temporary file, then rename); returns its file name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.name


def sweep_figures(table: dict[str, np.ndarray], keys: list[str]) -> list[tuple[str, str, Any]]:
    """With one grid key: (metric, caption, Figure) of each metric's mean and 95% interval
    against the key's values; with several keys, none (the table says it)."""
    if len(keys) != 1:
        return []
    labels = [str(v) for v in table[keys[0]]]
    made = []
    for metric in SWEEP_METRICS:
        if metric not in table:
            continue
        mean = np.asarray(table[metric], dtype=float)
        low = np.asarray(table[f"{metric}_ci_low"], dtype=float)
        high = np.asarray(table[f"{metric}_ci_high"], dtype=float)
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        error = np.nan_to_num(np.stack([mean - low, high - mean]))
        ax.errorbar(range(len(mean)), mean, yerr=error, marker="o", capsize=4)
        ax.set_xticks(range(len(mean)), labels)
        ax.set_xlabel(keys[0])
        ax.set_ylabel(f"{metric} (mean, 95% CI)")
        ax.grid(alpha=0.3)
        made.append((metric, f"{metric}: mean and 95% confidence interval over seeds", fig))
    return made
