"""Plots of runs and comparisons (matplotlib's object API: no pyplot, no global state)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from gossamer.results import Result

SMOOTHING = 5  # rounds in the moving average of per-round losses


def comparison_plots(out: Path, results: Mapping[str, Result]) -> list[str]:
    """Write the comparison's plots into ``out``; returns their file names."""
    written = [
        _save(_accuracy_vs(results, "bytes"), out / "accuracy_vs_bytes.png"),
        _save(_accuracy_vs(results, "rounds"), out / "accuracy_vs_rounds.png"),
        _save(_traffic_per_round(results), out / "communication_vs_rounds.png"),
    ]
    if any(r.totals["energy_joules"] > 0 for r in results.values()):
        written.append(_save(_accuracy_vs(results, "energy"), out / "accuracy_vs_energy.png"))
    if all("cumulative_prequential_loss" in r.rounds for r in results.values()):
        written.append(_save(_prequential_vs_bytes(results), out / "prequential_loss_vs_bytes.png"))
        drifts = [e["round"] for e in next(iter(results.values())).summary.get("drift", [])]
        if drifts:
            written.append(
                _save(_loss_around_drift(results, drifts), out / "loss_around_drift.png")
            )
    return written


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
        }[axis]
        ax.plot(x, m["test_accuracy_mean"], marker=".", label=name, color=colors[name])
    if axis == "bytes":
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("cumulative MB sent (symlog)")
    elif axis == "energy":
        ax.set_xlabel("cumulative energy of all nodes (kJ)")
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
        by_protocol.setdefault(result.summary["protocol"], []).append(name)
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


def write_label_distribution(path: Path, counts: np.ndarray) -> str:
    return _save(label_distribution(counts), path)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def _save(fig: Figure, path: Path) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.name
