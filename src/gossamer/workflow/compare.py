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
from pathlib import Path
from typing import Any

import numpy as np

from gossamer.config import (
    Config,
    ConfigError,
    apply_overrides,
    arg,
    load_config,
    merge_config,
    read_config_file,
)
from gossamer.report import (
    comparison_figures,
    markdown_table,
    save_plots,
    with_units,
    write_report,
)
from gossamer.results import (
    Comparison,
    Result,
    atomic_write,
    column_types,
    comparison_table,
    directory_names,
    table_to_csv,
)
from gossamer.workflow.callbacks import Callback, ProgressCallback
from gossamer.workflow.loop import ProgressArg, check_callbacks, check_report
from gossamer.workflow.runs import prepare_runs, run_or_continue, run_progress


def load_variants(
    source: Config | Mapping[str, Any] | str | Path | None,
    overrides: Sequence[str] = (),
    protocols: Sequence[str] = (),
) -> dict[str, Config]:
    """Validated configs of every variant, by name; ConfigError before any work."""
    if source is None:
        raw: dict[str, Any] = {}
    elif isinstance(source, Config):  # the base of every variant
        raw = source.model_dump(mode="json")
    elif isinstance(source, Mapping):
        raw = copy.deepcopy(dict(source))
    elif isinstance(source, (str, Path)):
        raw = read_config_file(Path(source))
    else:
        raise ConfigError(
            "config: expected a Config, a mapping or the path of a YAML/TOML file; got "
            f"{type(source).__name__}"
        )
    specs = raw.pop("variants", None) or {}
    if not isinstance(specs, Mapping):
        raise ConfigError(
            "variants: expected a mapping of variant names to partial configs or lists of "
            f"key=value overrides; got {type(specs).__name__}"
        )
    apply_overrides(raw, overrides)  # compose in any order, as --set on one run
    specs = dict(specs)
    for spec in protocols:
        specs[spec] = protocol_overrides(spec)
    if not specs:
        raise ConfigError(
            "variants: a comparison needs variants: a `variants:` mapping in the config "
            f"or {arg('protocol')} (e.g. protocol specs 'dpsgd' and 'periodic period=5')"
        )
    configs = {}
    for name, spec in specs.items():
        if isinstance(spec, Mapping):
            merged = merge_config(raw, dict(spec))
        elif isinstance(spec, list) and all(isinstance(s, str) for s in spec):
            merged = copy.deepcopy(raw)
            apply_overrides(merged, spec, f"variants.{name}")
        else:
            raise ConfigError(
                f"variants.{name}: expected a partial config (mapping) or a list of key=value "
                f"strings; got {spec!r}"
            )
        try:
            configs[str(name)] = load_config(merged)
        except ConfigError as error:
            raise error.prefixed(f"variants.{name}: ") from None
    return configs


def select_variants(configs: dict[str, Config], only: Sequence[str]) -> dict[str, Config]:
    """The variants named in ``only`` (all when empty), in the comparison's order;
    ConfigError naming an unknown one."""
    unknown = [name for name in only if name not in configs]
    if unknown:
        raise ConfigError(
            f"{arg('only')}: expected variant names of the comparison "
            f"({', '.join(configs)}); got {', '.join(map(repr, unknown))}"
        )
    return {name: c for name, c in configs.items() if not only or name in only}


def protocol_overrides(spec: str) -> list[str]:
    """``"periodic period=5"`` -> ``["protocol=periodic", "protocol.period=5"]``."""
    if not spec.split():
        raise ConfigError(
            f"{arg('protocol')}: expected a protocol name, then key=value pairs; got {spec!r}"
        )
    name, *pairs = spec.split()
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(
                f"{arg('protocol')} {spec!r}: expected a name then key=value pairs; got {pair!r}"
            )
    return [f"protocol={name}", *(f"protocol.{pair}" for pair in pairs)]


def compare(
    source: Config | Mapping[str, Any] | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    protocols: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressArg | Callable[[str], ProgressCallback | None] = None,
    report: bool = False,
    callbacks: Sequence[Callback] = (),
    only: Sequence[str] = (),
) -> Comparison:
    """Run every variant on identical conditions and compare them.

    Args:
        source: a comparison file (a config with ``variants:``), a mapping, or None.
        overrides: ``key=value`` applied to the base config (``--set``).
        protocols: extra variants as ``"name key=value ..."`` protocol specs.
        out: comparison directory; nothing is written when None.
        force: overwrite a finished comparison.
        progress: True (or 'bar', 'lines', a ProgressDisplay) shows each variant's
            progress labelled ``variant k/n name`` (see ``gossamer.run``); a function
            is called with each variant's name and returns that run's progress.
        report: also write report.html and report.md into ``out``, as the command line
            does (needs ``out``).
        callbacks: :class:`gossamer.Callback` objects told of every variant's run.
        only: run these variants of the comparison only (by name; default: all).
    """
    check_report(report, out)
    configs = select_variants(load_variants(source, overrides, protocols), only)
    out = Path(out) if out is not None else None
    folders = dict(zip(configs, directory_names(list(configs)), strict=True))
    shown = run_progress(progress, len(configs))  # bad arguments: before any work
    callbacks = check_callbacks(callbacks, 1)
    if out is not None:
        planned = [(out / folders[name], config) for name, config in configs.items()]
        prepare_runs(out, "comparison", planned, force)
    results = {}
    for index, (name, config) in enumerate(configs.items()):
        run_dir = out / folders[name] if out is not None else None
        results[name] = run_or_continue(config, run_dir, force, shown(index, name, name), callbacks)
    table = comparison_table(results)
    if out is not None:
        write_comparison(out, results, table, folders)
        if report:
            write_report([out])
    return Comparison(results, table, out)


def write_comparison(
    out: Path, results: Mapping[str, Result], table: dict, folders: Mapping[str, str]
) -> None:
    """comparison.csv, comparison.md, plots, then comparison.json (the finish mark)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "comparison.csv", table_to_csv(table))
    atomic_write(out / "comparison.md", markdown_table(with_units(table)))
    figures = comparison_figures(results)
    plots = save_plots(out, figures)  # PNG, PDF and SVG of each
    summary = {
        "variants": {name: folders[name] for name in results},
        "table": [{k: _plain(table[k][i]) for k in table} for i in range(len(table["variant"]))],
        "columns": column_types(table),  # how load() reads comparison.csv back
        "plots": list(plots.values()),
        "plots_left_out": {p.stem: p.caption for p in figures if p.figure is None},
    }
    atomic_write(out / "comparison.json", json.dumps(summary, indent=2) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
