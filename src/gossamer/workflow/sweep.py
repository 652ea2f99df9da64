"""Sweeps: the product of parameter values, over several seeds, with confidence intervals.

``gossamer sweep CONFIG --grid protocol.delta=0.1,1,10 --grid optimizer.lr=0.05,0.1
--seeds 3`` runs every combination of the grid's values (a *point*) with seeds
``seed, seed+1, ..., seed+S-1`` and reports, per point, the mean of each final
metric and its 95% confidence interval, ``mean +- t(0.975, S-1) x sd / sqrt(S)``
(Student's t; sd with S-1 degrees of freedom). The runs go seed by seed (every point
with the first seed, then with the second, ...), so a first look at every point comes
early, and consecutive runs share their data and graph (built once). All configs
are validated before the first run. Rerunning a stopped sweep into the same
directory keeps its finished runs and resumes the one that was interrupted from its
checkpoint (``force`` starts over).

The sweep directory holds ``<point>/seed-<s>/`` run directories, ``runs.csv`` (one
row per run), ``sweep.csv`` and ``sweep.md`` (one row per point), a plot per metric
when the grid has one key, and ``sweep.json`` (written last: a finished sweep).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gossamer.config import Config, ConfigError, arg, load_config
from gossamer.config.loading import ConfigLoader
from gossamer.report import (
    format_interval,
    markdown_table,
    save_plots,
    sweep_curves,
    sweep_figures,
    write_report,
)
from gossamer.results import (
    Result,
    Sweep,
    aggregate,
    atomic_write,
    column_types,
    directory_names,
    point_label,
    runs_table,
    table_to_csv,
)
from gossamer.results.sweep import METRICS
from gossamer.workflow.callbacks import Callback, ProgressCallback
from gossamer.workflow.loop import ProgressArg, check_callbacks, check_report
from gossamer.workflow.runs import prepare_runs, run_or_continue, run_progress


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["a.b=1,2", "c=[1,2],[3]"]`` -> {"a.b": [1, 2], "c": [[1, 2], [3]]} (YAML values)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ConfigError(f"{arg('grid')}: expected key=value1,value2,...; got {spec!r}")
        values, depth, current = [], 0, ""
        for char in text:  # split on commas outside brackets
            depth += char in "[{"
            depth -= char in "]}"
            if char == "," and depth == 0:
                values.append(current)
                current = ""
            else:
                current += char
        values.append(current)
        try:
            parsed = [yaml.load(v.strip(), Loader=ConfigLoader) for v in values]  # YAML 1.2
        except yaml.YAMLError as error:
            raise ConfigError(f"{arg('grid')} {key}: cannot parse a value: {error}") from None
        dumped = [json.dumps(v, sort_keys=True) for v in parsed]
        repeated = sorted({d for d in dumped if dumped.count(d) > 1})
        if repeated:
            raise ConfigError(
                f"{arg('grid')} {key}: each value once; got {', '.join(repeated)} twice"
            )
        if key.strip() in grid:
            raise ConfigError(
                f"{arg('grid')}: key '{key.strip()}' given twice; put its values in one"
            )
        grid[key.strip()] = parsed
    return grid


def plan(base: Config, grid: dict[str, list[Any]], seeds: int) -> list[tuple[dict, int, Config]]:
    """Every (point, seed, config), validated: ConfigError names the point if one fails."""
    if seeds < 1:
        raise ConfigError(f"{arg('seeds')}: expected at least 1; got {seeds}")
    keys = list(grid)
    points = [
        dict(zip(keys, values, strict=True))
        for values in (itertools.product(*(grid[k] for k in keys)) if keys else [()])
    ]
    runs = []
    for k in range(seeds):  # seed by seed: consecutive runs share data and graph
        for point in points:
            overrides = [f"{key}={json.dumps(value)}" for key, value in point.items()]
            seed = point.get("seed", base.seed)  # a grid over seed: each value + k
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ConfigError(f"{arg('grid')} seed: expected integers; got {seed!r}")
            overrides.append(f"seed={seed + k}")
            try:
                runs.append((point, seed + k, load_config(base, overrides, arg("grid"))))
            except ConfigError as error:
                raise error.prefixed(f"sweep point {point}: ") from None
    return runs


def sweep(
    source,
    *,
    grid: Sequence[str] = (),
    seeds: int = 1,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressArg | Callable[[dict[str, Any], int], ProgressCallback | None] = None,
    report: bool = False,
    callbacks: Sequence[Callback] = (),
) -> Sweep:
    """Run the grid over seeds and aggregate mean and 95% confidence interval per point.

    Args:
        source: the base config (a Config, mapping or file).
        grid: ``"key=v1,v2,..."`` specs; every combination of values is a point.
        seeds: runs per point, with seeds seed, seed+1, ...
        overrides: ``key=value`` applied to the base config.
        out: sweep directory; nothing is written when None.
        force: overwrite a finished sweep.
        progress: True (or 'bar', 'lines', a ProgressDisplay) shows each run's
            progress labelled ``variant k/n point, seed s``; a function is called with
            each run's point and seed and returns that run's progress.
        report: also write report.html and report.md into ``out``, as the command line
            does (needs ``out``).
        callbacks: :class:`gossamer.Callback` objects told of every run.
    """
    check_report(report, out)
    base = load_config(source, overrides)
    grid_values = parse_grid(grid)
    runs = plan(base, grid_values, seeds)
    points: list[dict[str, Any]] = []
    for point, _, _ in runs:
        if point not in points:
            points.append(point)
    folders = directory_names([point_label(p) for p in points])
    out = Path(out) if out is not None else None

    def run_dir(index: int, seed: int) -> Path:
        return out / folders[index] / f"seed-{seed}"

    shown = run_progress(progress, len(runs))  # bad arguments: before any work
    callbacks = check_callbacks(callbacks, 1)
    if out is not None:
        planned = [(run_dir(points.index(p), s), config) for p, s, config in runs]
        prepare_runs(out, "sweep", planned, force)
    results: dict[tuple[int, int], Result] = {}
    for number, (point, seed, config) in enumerate(runs):
        index = points.index(point)
        name = ", ".join(f"{k}={v}" for k, v in point.items()) or "base"
        name += f", seed {seed}"
        where = run_dir(index, seed) if out is not None else None
        callback = shown(number, name, point, seed)
        results[index, seed] = run_or_continue(config, where, force, callback, callbacks)
    table = aggregate(points, results, list(grid_values))
    if out is not None:
        dirs = {key: run_dir(*key).relative_to(out).as_posix() for key in results}
        write_sweep(out, points, results, table, list(grid_values), dirs)
        if report:
            write_report([out])
    return Sweep(points, results, table, out)


def write_sweep(out: Path, points, results, table, keys, dirs) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "runs.csv", table_to_csv(runs_table(points, results, keys)))
    atomic_write(out / "sweep.csv", table_to_csv(table))
    readable: dict[str, np.ndarray] = {k: table[k] for k in [*keys, "seeds"]}
    units = {"megabytes_sent": ("bytes sent", "B", 1e6), "energy_joules": ("energy", "J", 1.0)}
    for metric in METRICS:
        if metric in table:
            name, unit, factor = units.get(metric, (metric, None, 1.0))
            readable[f"{name} (95% CI)"] = np.array(
                [
                    format_interval(*(float(v) * factor for v in values), unit=unit)
                    for values in zip(
                        table[metric],
                        table[f"{metric}_ci_low"],
                        table[f"{metric}_ci_high"],
                        strict=True,
                    )
                ],
                dtype=object,
            )
    atomic_write(out / "sweep.md", markdown_table(readable))
    figures = [*sweep_figures(table, keys), *sweep_curves(points, results)]
    plots = save_plots(out, figures)  # PNG, PDF and SVG of each
    summary = {
        "grid": keys,
        "points": [{k: p[k] for k in keys} for p in points],
        "runs": {dirs[i, s]: {"point": i, "seed": s} for i, s in results},
        "plots": list(plots.values()),
        "plots_left_out": {p.stem: p.caption for p in figures if p.figure is None},
        "columns": column_types(table),  # how load() reads sweep.csv back
    }
    atomic_write(out / "sweep.json", json.dumps(summary, indent=2) + "\n")
