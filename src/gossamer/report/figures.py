"""What every plot shares: the plot record, files (PNG, PDF, SVG), axis units, colours,
which evaluations a curve joins, and the mean and 95% band of curves over seeds."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from gossamer.report.tables import unit_scale
from gossamer.results import Result

#: The files written for every plot: PNG for screens and the Markdown report, PDF for
#: LaTeX papers, SVG to edit (Inkscape, Illustrator) or put on the web.
FIGURE_FORMATS = ("png", "pdf", "svg")
DPI = 110  # of the PNG files
LOG_SPAN = 100.0  # an axis of bytes is logarithmic when the totals differ this much


@dataclass
class Plot:
    """One plot of a report: its file stem, title, caption and figure.

    ``figure`` is None for a plot left out; the caption then says why (e.g. every
    variant sent the same bytes, so accuracy against bytes would repeat accuracy
    against rounds).
    """

    stem: str
    title: str
    caption: str
    figure: Figure | None


def save_figure(fig: Figure, path: Path, formats: Sequence[str] = FIGURE_FORMATS) -> str:
    """Write the figure as ``path`` with each suffix of ``formats`` (PNG, PDF, SVG by
    default), each file atomically (temporary file, then rename); returns the PNG's
    (the first format's) file name. The files carry no date, so the same data gives
    the same bytes."""
    import matplotlib

    names = []
    for suffix in formats:
        target = path.with_suffix(f".{suffix}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{path.stem}.", suffix=f".{suffix}")
        os.close(fd)
        try:
            with matplotlib.rc_context({"svg.hashsalt": "gossamer"}):
                fig.savefig(tmp, dpi=DPI, format=suffix, metadata=_NO_DATE.get(suffix))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        names.append(target.name)
    return names[0]


_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}, "png": {}}


def save_plots(out: Path, plots: Sequence[Plot], prefix: str = "") -> dict[str, str]:
    """Write every drawn plot into ``out`` (``prefix + stem`` with each format);
    returns the PNG file name of each written plot by stem."""
    return {
        plot.stem: save_figure(plot.figure, out / f"{prefix}{plot.stem}.png")
        for plot in plots
        if plot.figure is not None
    }


def axis_unit(values: Sequence[float], unit: str) -> tuple[float, str]:
    """The scale and unit name of an axis showing ``values`` (their largest decides):
    ``axis_unit([0, 4.9e8], "B") == (1e6, "MB")``."""
    finite = [abs(float(v)) for v in values if math.isfinite(float(v))]
    return unit_scale(max(finite, default=0.0), unit)


def time_unit(seconds: Sequence[float]) -> tuple[float, str]:
    """Seconds, minutes or hours for an axis of simulated time (by its largest value)."""
    largest = max((float(s) for s in seconds), default=0.0)
    if largest >= 2 * 3600:
        return 3600.0, "h"
    if largest >= 120:
        return 60.0, "min"
    return 1.0, "s"


def cycle_rounds(result: Result) -> int:
    """Rounds in one cycle of the run's protocol schedule (``protocol.cycle_rounds``:
    SkipTrain's train + sync rounds, the period of periodic and dynamic averaging;
    1 for protocols whose rounds are all alike)."""
    return max(int(getattr(result.config.protocol, "cycle_rounds", 1)), 1)


def cycle_end(rounds: np.ndarray, cycle: int) -> np.ndarray:
    """Which evaluations fall at the end of a protocol cycle (rounds done a multiple
    of ``cycle``): the evaluations a curve joins, so that protocols are compared at
    the same phase of their cycles (after their synchronization rounds, not between
    a training and a sync round)."""
    return np.asarray(rounds, dtype=np.int64) % cycle == 0


def segments(rounds: np.ndarray, drifts: Sequence[int]) -> list[np.ndarray]:
    """Indices of evaluations split at each drift: a curve is not joined across a
    concept drift (round d is the first on the new concept, so an evaluation after
    ``d - 1`` rounds is the last before it)."""
    rounds = np.asarray(rounds)
    cuts = [int(np.searchsorted(rounds, d)) for d in sorted(drifts)]
    edges = [0, *cuts, len(rounds)]
    parts = [np.arange(a, b) for a, b in zip(edges, edges[1:], strict=False) if b > a]
    return parts


def listed(values: Sequence[int]) -> str:
    """``1, 5, 9``: rounds in a caption."""
    return ", ".join(str(v) for v in values)


def drift_rounds(results: Mapping[str, Result]) -> list[int]:
    """The rounds at which the concept drifted (the runs compared share their data)."""
    first = next(iter(results.values()), None)
    return [int(e["round"]) for e in first.summary.get("drift", [])] if first else []


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


def curve_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of S curves (rows of ``curves``, shape (S, R)) and its 95% Student-t band,
    ``mean +- t(0.975, S-1) x sd / sqrt(S)`` (sd with S-1 degrees of freedom) at every
    point; with one curve the band is NaN (no interval from one seed)."""
    curves = np.asarray(curves, dtype=np.float64)
    mean = curves.mean(axis=0)
    if len(curves) < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    from scipy.stats import t

    half = t.ppf(0.975, len(curves) - 1) * curves.std(axis=0, ddof=1) / math.sqrt(len(curves))
    return mean, mean - half, mean + half


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` values (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(values) + 1) - counts]) / counts


def same_for_all(columns: Sequence[tuple[np.ndarray, np.ndarray]]) -> bool:
    """Whether several variants' (rounds, values) are the same: then a plot against
    these values would repeat the plot against rounds, and tells nothing apart."""
    if len(columns) < 2:
        return False
    rounds, values = columns[0]
    return all(
        len(r) == len(rounds)
        and np.array_equal(r, rounds)
        and np.allclose(np.asarray(v, float), np.asarray(values, float), rtol=1e-9, atol=0)
        for r, v in columns[1:]
    )


@dataclass
class Cycles:
    """Which evaluations each variant's curve joins (those at the end of its protocol's
    cycles), and the caption's account of it."""

    by_cycle: dict[int, list[str]] = field(default_factory=dict)
    too_few: list[str] = field(default_factory=list)

    def joined(self, label: str, result: Result) -> np.ndarray:
        """The evaluations at the end of a cycle; all of them for protocols without
        cycles, or when fewer than two fall at a cycle's end."""
        rounds = result.metrics["round"]
        cycle = cycle_rounds(result)
        ends = cycle_end(rounds, cycle)
        if cycle == 1 or ends.all():
            return np.ones(len(rounds), dtype=bool)
        if ends.sum() < 2:
            self.too_few.append(label)
            return np.ones(len(rounds), dtype=bool)
        self.by_cycle.setdefault(cycle, []).append(label)
        return ends

    def caption(self) -> list[str]:
        lines = [
            f"{', '.join(labels)}: the line joins the evaluations at the end of each "
            f"{cycle}-round cycle (rounds done a multiple of {cycle}, right after the "
            "synchronization), so that every protocol is compared at the same phase of its "
            "cycle (the models drift apart while they train and agree again after the "
            "synchronization); hollow dots: the evaluations in between, not joined."
            for cycle, labels in self.by_cycle.items()
        ]
        if self.too_few:
            lines.append(
                f"{', '.join(self.too_few)}: fewer than two evaluations at the end of a cycle, "
                "so all are joined (set eval_every to a multiple of the cycle)."
            )
        return lines


def finished(result: Result) -> bool:
    """Whether the run finished: it has final metrics (an unfinished run directory loads
    with the summary ``{"finished": False}``; a run in memory has no "finished" key)."""
    return "final" in result.summary


def sampled_rows(result: Result) -> np.ndarray:
    """(E,) bool: the evaluations that measured a sample of the nodes or a subset of the
    test set (``eval.nodes``, ``eval.test_samples``); none for runs without the columns.

    The whole test set's size is what the final evaluation measured (it measures
    everything); an unfinished run may not have it, so a row with a positive interval
    counts as sampled too."""
    m = result.metrics
    if "test_accuracy_mean_ci95" not in m:
        return np.zeros(len(m.get("round", ())), dtype=bool)
    nodes = np.asarray(m["evaluated_nodes"]) < result.config.nodes
    tests = np.asarray(m["evaluated_test_samples"])
    return nodes | (tests < tests.max()) | (np.asarray(m["test_accuracy_mean_ci95"]) > 0)


def sampling_caption(results: Mapping[str, Result]) -> str:
    """What the sampled evaluations measured, for the caption of a plot of their mean
    accuracy with its 95% interval (shaded); empty when every evaluation measured
    every node on the whole test set."""
    said: dict[str, list[str]] = {}
    for label, result in results.items():
        rows = sampled_rows(result)
        if not rows.any():
            continue
        m, nodes = result.metrics, result.config.nodes
        parts = []
        measured = sorted({int(k) for k in m["evaluated_nodes"][rows]})
        if measured != [nodes]:
            parts.append(
                f"{'/'.join(map(str, measured))} of {nodes} nodes (a new sample each time)"
            )
        subset = sorted({int(k) for k in m["evaluated_test_samples"][rows]})
        whole = int(np.max(m["evaluated_test_samples"]))  # unfinished: maybe the subset
        unfinished_subset = not finished(result) and result.config.eval.test_samples
        if subset != [whole] or unfinished_subset:
            parts.append(f"{'/'.join(map(str, subset))} test samples (the same subset all run)")
        said.setdefault(" on ".join(parts) or "a sample", []).append(label)
    if not said:
        return ""
    phrases = [
        f"{what}"
        if len(said) == 1 and len(results) == len(labels)
        else f"{', '.join(labels)}: {what}"
        for what, labels in said.items()
    ]
    return (
        "Sampled evaluation (eval.nodes, eval.test_samples): every evaluation before the "
        f"last measured {'; '.join(phrases)}, so its mean is an estimate; shaded around the "
        "mean: its 95% interval for the mean over every node on the whole test set "
        "(test_accuracy_mean_ci95). The final evaluation measures every node on the whole "
        "test set."
    )


def draw_interval(ax, x, result: Result, joined: np.ndarray, drifts, color, label=None) -> None:
    """Shade the 95% interval of a sampled evaluation's mean accuracy,
    ``test_accuracy_mean +- test_accuracy_mean_ci95``, over the evaluations a curve
    joins (``joined``), broken at drifts; nothing when no evaluation sampled."""
    if not sampled_rows(result).any():
        return
    m = result.metrics
    mean = np.asarray(m["test_accuracy_mean"], dtype=float)
    half = np.asarray(m["test_accuracy_mean_ci95"], dtype=float)
    for part in segments(m["round"], drifts):
        keep = part[joined[part]]
        if len(keep):
            ax.fill_between(
                x[keep],
                mean[keep] - half[keep],
                mean[keep] + half[keep],
                color=color,
                alpha=0.2,
                linewidth=0,
                label=label,
            )
            label = None
