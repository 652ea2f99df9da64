"""What every plot shares: the plot record, files (PNG, PDF, SVG), axis units, colours,
which evaluations a curve joins, and the mean and 95% band of curves over seeds."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
