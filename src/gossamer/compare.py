"""Comparisons: several variants of one experiment on identical conditions.

A comparison is a base config plus *variants*, each a partial config merged onto the
base (a ``variants:`` mapping in the file, or ``--protocol "name key=value ..."`` on
the command line). Every variant keeps the base's seed, so all of them see the same
data, partition, topology and initial model; only what the variant changes differs.
All variant configs are validated before the first run starts.

The comparison directory holds one run directory per variant, ``comparison.csv``,
``comparison.md``, ``comparison.json`` (written last: it marks a finished
comparison) and plots. Rerunning a stopped comparison into the same directory keeps
its finished variants and resumes the interrupted one from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import (
    Config,
    ConfigError,
    apply_override,
    load_config,
    merge_config,
    read_config_file,
)
from gossamer.results import Result, atomic_write, directory_names, table_to_csv
from gossamer.runner import ProgressCallback, prepare_runs, run_or_continue

RECOVERY_WINDOW = 10  # rounds averaged on each side of a drift
RECOVERY_FACTOR = 2.0  # recovered: the loss is back within 2x its pre-drift level
AFTER_DRIFT = 100  # rounds after a drift over which loss and traffic are summed


@dataclass
class Comparison:
    """The results of every variant, and the table that compares them."""

    results: dict[str, Result]
    table: dict[str, np.ndarray]  # comparison.csv columns, one entry per variant
    out: Path | None


def load_variants(
    source: Mapping[str, Any] | str | Path | None,
    overrides: Sequence[str] = (),
    protocols: Sequence[str] = (),
) -> dict[str, Config]:
    """Validated configs of every variant, by name; ConfigError before any work."""
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    else:
        raw = read_config_file(Path(source))
    specs = raw.pop("variants", None) or {}
    if not isinstance(specs, Mapping):
        raise ConfigError(
            "variants: expected a mapping of variant names to partial configs or lists of "
            f"key=value overrides; got {type(specs).__name__}"
        )
    for override in overrides:
        apply_override(raw, override)
    specs = dict(specs)
    for spec in protocols:
        specs[spec] = protocol_overrides(spec)
    if not specs:
        raise ConfigError(
            "variants: a comparison needs variants: a `variants:` mapping in the config "
            "or --protocol options (e.g. --protocol dpsgd --protocol 'periodic period=5')"
        )
    configs = {}
    for name, spec in specs.items():
        if isinstance(spec, Mapping):
            merged = merge_config(raw, dict(spec))
        elif isinstance(spec, list) and all(isinstance(s, str) for s in spec):
            merged = copy.deepcopy(raw)
            for override in spec:
                apply_override(merged, override)
        else:
            raise ConfigError(
                f"variants.{name}: expected a partial config (mapping) or a list of key=value "
                f"strings; got {spec!r}"
            )
        try:
            configs[str(name)] = load_config(merged)
        except ConfigError as error:
            raise ConfigError(f"variants.{name}: {error}") from None
    return configs


def protocol_overrides(spec: str) -> list[str]:
    """``"periodic period=5"`` -> ``["protocol=periodic", "protocol.period=5"]``."""
    name, *pairs = spec.split()
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(
                f"--protocol {spec!r}: expected a name then key=value pairs; got {pair!r}"
            )
    return [f"protocol={name}", *(f"protocol.{pair}" for pair in pairs)]


def compare(
    source: Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    protocols: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: Callable[[str], ProgressCallback | None] | None = None,
) -> Comparison:
    """Run every variant on identical conditions and compare them.

    Args:
        source: a comparison file (a config with ``variants:``), a mapping, or None.
        overrides: ``key=value`` applied to the base config (``--set``).
        protocols: extra variants as ``"name key=value ..."`` protocol specs.
        out: comparison directory; nothing is written when None.
        force: overwrite a finished comparison.
        progress: called with each variant's name; returns that run's progress callback.
    """
    configs = load_variants(source, overrides, protocols)
    out = Path(out) if out is not None else None
    folders = dict(zip(configs, directory_names(list(configs)), strict=True))
    if out is not None:
        planned = [(out / folders[name], config) for name, config in configs.items()]
        prepare_runs(out, "comparison", planned, force)
    results = {}
    for name, config in configs.items():
        run_dir = out / folders[name] if out is not None else None
        callback = progress(name) if progress is not None else None
        results[name] = run_or_continue(config, run_dir, force, callback)
    table = comparison_table(results)
    if out is not None:
        write_comparison(out, results, table, folders)
    return Comparison(results, table, out)


def comparison_table(results: Mapping[str, Result]) -> dict[str, np.ndarray]:
    """One row per variant: final quality, traffic and, with streams, cumulative loss."""
    rows = []
    for name, result in results.items():
        final, totals = result.final, result.totals
        row: dict[str, Any] = {
            "variant": name,
            "protocol": result.summary["protocol"],
            "test_accuracy_mean": final["test_accuracy_mean"],
            "avg_model_accuracy": final["avg_model_accuracy"],
            "messages": totals["messages"],
            "megabytes_sent": totals["bytes_sent"] / 1e6,
            "local_steps": totals["local_steps"],
            "energy_joules": totals["energy_joules"],
        }
        if "cumulative_prequential_loss" in final:
            row["cumulative_prequential_loss"] = final["cumulative_prequential_loss"]
            row["cumulative_prequential_error"] = final["cumulative_prequential_error"]
            for event in result.summary.get("drift", []):
                d = event["round"]
                loss = result.rounds["prequential_loss"]
                rounds = recovery_rounds(loss, d)
                row[f"recovery_rounds_drift_{d}"] = rounds if rounds is not None else math.nan
                after = slice(d - 1, d - 1 + AFTER_DRIFT)  # rounds d .. d + 99
                row[f"loss_after_drift_{d}"] = float(loss[after].sum())
                row[f"megabytes_after_drift_{d}"] = (
                    float(result.rounds["bytes_sent"][after].sum()) / 1e6
                )
        row["wall_seconds"] = result.summary["wall_seconds"]
        rows.append(row)
    streaming = all("cumulative_prequential_loss" in row for row in rows)
    cost = [row["megabytes_sent"] for row in rows]
    quality = [
        row["cumulative_prequential_loss"] if streaming else -row["test_accuracy_mean"]
        for row in rows
    ]
    for row, optimal in zip(rows, pareto_optimal(cost, quality), strict=True):
        row["pareto_optimal"] = optimal
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows], dtype=object) for k in keys}


def pareto_optimal(cost: Sequence[float], loss: Sequence[float]) -> list[bool]:
    """Whether each point is not dominated: no other has cost and loss both no higher,
    one of them strictly lower. Used on (MB sent, cumulative prequential loss) for
    streams and (MB sent, -accuracy) otherwise."""
    points = list(zip(cost, loss, strict=True))
    return [
        not any(c <= ci and l <= li and (c < ci or l < li) for c, l in points) for ci, li in points
    ]


def recovery_rounds(
    loss: np.ndarray,
    drift_round: int,
    window: int = RECOVERY_WINDOW,
    factor: float = RECOVERY_FACTOR,
) -> int | None:
    """Rounds after a drift until the loss is back near its pre-drift level.

    ``loss[t - 1]`` is round t's prequential loss (summed over nodes). The baseline is
    the mean over the ``window`` rounds before the drift; the network has recovered at
    the first round r >= drift_round whose ``window``-round mean loss (rounds r ..
    r + window - 1) is at most ``factor x baseline``. Returns r - drift_round, or None
    if that never happens (or there are too few rounds before the drift to tell).
    """
    first = drift_round - 1  # index of the drift round
    if first < window:
        return None
    baseline = float(np.mean(loss[first - window : first]))
    for start in range(first, len(loss) - window + 1):
        if float(np.mean(loss[start : start + window])) <= factor * baseline:
            return start - first
    return None


def write_comparison(
    out: Path, results: Mapping[str, Result], table: dict, folders: Mapping[str, str]
) -> None:
    """comparison.csv, comparison.md, plots, then comparison.json (the finish mark)."""
    from gossamer.plots import comparison_plots

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "comparison.csv", table_to_csv(table))
    atomic_write(out / "comparison.md", markdown_table(table))
    plots = comparison_plots(out, results)
    summary = {
        "variants": {name: folders[name] for name in results},
        "table": [{k: _plain(table[k][i]) for k in table} for i in range(len(table["variant"]))],
        "plots": plots,
    }
    atomic_write(out / "comparison.json", json.dumps(summary, indent=2) + "\n")


def markdown_table(table: dict[str, np.ndarray]) -> str:
    keys = list(table)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for i in range(len(next(iter(table.values())))):
        lines.append("| " + " | ".join(_fmt(table[k][i]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.4f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def load(path: str | Path):
    """Read results back: a run directory gives a Result, a comparison directory a
    Comparison, a sweep directory a Sweep (tables as numpy columns; ``frame()`` on a
    Result gives pandas DataFrames when pandas is installed)."""
    from gossamer.results import directory_kind, load_run, read_table

    path = Path(path)
    kind = directory_kind(path)
    if kind == "comparison":
        names = json.loads((path / "comparison.json").read_text())["variants"]
        results = {name: load_run(path / sub) for name, sub in names.items()}
        return Comparison(results, read_table(path / "comparison.csv"), path)
    if kind == "sweep":
        from gossamer.sweep import Sweep

        meta = json.loads((path / "sweep.json").read_text())
        runs = {
            (run["point"], run["seed"]): load_run(path / folder)
            for folder, run in meta["runs"].items()
        }
        return Sweep(meta["points"], runs, read_table(path / "sweep.csv"), path)
    if not path.is_dir():
        raise ConfigError(f"load: '{path}' is not a directory")
    if kind is None and (any(path.glob("*/config.yaml")) or any(path.glob("*/seed-*/config.yaml"))):
        raise ConfigError(
            f"load: '{path}' holds run directories but is not a run, a finished comparison "
            "(comparison.json) or a finished sweep (sweep.json); an unfinished comparison or "
            "sweep finishes when its command is run again; or load the runs one by one"
        )
    return load_run(path)
