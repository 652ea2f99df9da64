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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from gossamer.config import Config, ConfigError, load_config
from gossamer.results import Result, atomic_write, directory_names, table_to_csv

METRICS = (
    "test_accuracy_mean",
    "avg_model_accuracy",
    "megabytes_sent",
    "energy_joules",
    "cumulative_prequential_loss",
)


@dataclass
class Sweep:
    points: list[dict[str, Any]]  # grid values of each point
    runs: dict[tuple[int, int], Result]  # (point index, seed) -> result
    table: dict[str, np.ndarray]  # sweep.csv columns
    out: Path | None


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["a.b=1,2", "c=[1,2],[3]"]`` -> {"a.b": [1, 2], "c": [[1, 2], [3]]} (YAML values)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, text = spec.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ConfigError(f"--grid: expected key=value1,value2,...; got {spec!r}")
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
            parsed = [yaml.safe_load(v.strip()) for v in values]
        except yaml.YAMLError as error:
            raise ConfigError(f"--grid {key}: cannot parse a value: {error}") from None
        dumped = [json.dumps(v, sort_keys=True) for v in parsed]
        repeated = sorted({d for d in dumped if dumped.count(d) > 1})
        if repeated:
            raise ConfigError(f"--grid {key}: each value once; got {', '.join(repeated)} twice")
        if key.strip() in grid:
            raise ConfigError(f"--grid: key '{key.strip()}' given twice; put its values in one")
        grid[key.strip()] = parsed
    return grid


def plan(base: Config, grid: dict[str, list[Any]], seeds: int) -> list[tuple[dict, int, Config]]:
    """Every (point, seed, config), validated: ConfigError names the point if one fails."""
    if seeds < 1:
        raise ConfigError(f"--seeds: expected at least 1; got {seeds}")
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
                raise ConfigError(f"--grid seed: expected integers; got {seed!r}")
            overrides.append(f"seed={seed + k}")
            try:
                runs.append((point, seed + k, load_config(base, overrides)))
            except ConfigError as error:
                raise ConfigError(f"sweep point {point}: {error}") from None
    return runs


def sweep(
    source,
    *,
    grid: Sequence[str] = (),
    seeds: int = 1,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress=None,
) -> Sweep:
    """Run the grid over seeds and aggregate mean and 95% confidence interval per point."""
    from gossamer.runner import prepare_runs, run_or_continue

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

    if out is not None:
        planned = [(run_dir(points.index(p), s), config) for p, s, config in runs]
        prepare_runs(out, "sweep", planned, force)
    results: dict[tuple[int, int], Result] = {}
    for point, seed, config in runs:
        index = points.index(point)
        callback = progress(point, seed) if progress is not None else None
        where = run_dir(index, seed) if out is not None else None
        results[index, seed] = run_or_continue(config, where, force, callback)
    table = aggregate(points, results, list(grid_values))
    if out is not None:
        dirs = {key: run_dir(*key).relative_to(out).as_posix() for key in results}
        write_sweep(out, points, results, table, list(grid_values), dirs)
    return Sweep(points, results, table, out)


def point_label(point: dict[str, Any]) -> str:
    """``key=value_key=value`` (strings bare, other values as JSON); 'base' if empty."""
    if not point:
        return "base"
    return "_".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in point.items())


def final_metrics(result: Result) -> dict[str, float]:
    final, totals = result.summary["final"], result.summary["totals"]
    values = {
        "test_accuracy_mean": final["test_accuracy_mean"],
        "avg_model_accuracy": final["avg_model_accuracy"],
        "megabytes_sent": totals["bytes_sent"] / 1e6,
        "energy_joules": totals["energy_joules"],
    }
    if "cumulative_prequential_loss" in final:
        values["cumulative_prequential_loss"] = final["cumulative_prequential_loss"]
    return values


def confidence_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95% Student-t interval; one value: (v, nan, nan)."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data)))
    return mean, mean - half, mean + half


def aggregate(points, results, keys) -> dict[str, np.ndarray]:
    rows = []
    for index, point in enumerate(points):
        runs = [r for (i, _), r in results.items() if i == index]
        row: dict[str, Any] = {key: json.dumps(point[key]) for key in keys}
        row["seeds"] = len(runs)
        per_run = [final_metrics(r) for r in runs]
        for metric in METRICS:
            if all(metric in m for m in per_run):
                mean, low, high = confidence_interval([m[metric] for m in per_run])
                row.update({metric: mean, f"{metric}_ci_low": low, f"{metric}_ci_high": high})
        rows.append(row)
    names = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows], dtype=object) for k in names}


def write_sweep(out: Path, points, results, table, keys, dirs) -> None:
    out.mkdir(parents=True, exist_ok=True)
    per_run = []
    for (index, seed), result in results.items():
        per_run.append(
            {
                **{k: json.dumps(points[index][k]) for k in keys},
                "run_seed" if "seed" in keys else "seed": seed,
                **final_metrics(result),
            }
        )
    names = list(dict.fromkeys(k for row in per_run for k in row))
    atomic_write(
        out / "runs.csv",
        table_to_csv(
            {k: np.array([r.get(k, math.nan) for r in per_run], dtype=object) for k in names}
        ),
    )
    atomic_write(out / "sweep.csv", table_to_csv(table))
    from gossamer.compare import _fmt, markdown_table

    readable: dict[str, np.ndarray] = {k: table[k] for k in [*keys, "seeds"]}
    for metric in METRICS:
        if metric in table:
            readable[f"{metric} (95% CI)"] = np.array(
                [
                    f"{_fmt(m)} [{_fmt(lo)}, {_fmt(hi)}]" if not math.isnan(lo) else _fmt(m)
                    for m, lo, hi in zip(
                        table[metric],
                        table[f"{metric}_ci_low"],
                        table[f"{metric}_ci_high"],
                        strict=True,
                    )
                ],
                dtype=object,
            )
    atomic_write(out / "sweep.md", markdown_table(readable))
    plots = _plots(out, table, keys)
    summary = {
        "grid": keys,
        "points": [{k: p[k] for k in keys} for p in points],
        "runs": {dirs[i, s]: {"point": i, "seed": s} for i, s in results},
        "plots": plots,
    }
    atomic_write(out / "sweep.json", json.dumps(summary, indent=2) + "\n")


def _plots(out: Path, table: dict[str, np.ndarray], keys: list[str]) -> list[str]:
    from gossamer.plots import _save

    return [_save(fig, out / f"sweep_{metric}.png") for metric, _, fig in figures(table, keys)]


def figures(table: dict[str, np.ndarray], keys: list[str]) -> list[tuple[str, str, Any]]:
    """With one grid key: (metric, caption, Figure) of each metric's mean and 95% interval
    against the key's values; with several keys, none (the table says it)."""
    if len(keys) != 1:
        return []
    from matplotlib.figure import Figure

    labels = [str(v) for v in table[keys[0]]]
    made = []
    for metric in METRICS:
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
