"""``gossamer`` command line: thin commands over the Python API."""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from gossamer import __version__
from gossamer.config import ConfigError, dump_config, load_config, read_config_file

app = typer.Typer(
    name="gossamer",
    help="Fast, honest simulation of frugal decentralized deep learning.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
console = Console(stderr=True)

# Shared options, reused by every command that reads a config.
ConfigArg = Annotated[
    Path | None,
    typer.Argument(help="YAML or TOML config file; omit for the built-in quickstart."),
]
ReportOpt = Annotated[
    bool, typer.Option("--report/--no-report", help="Write report.html and report.md.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", help="Override a config key, e.g. protocol.period=5."
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gossamer {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Fast, honest simulation of frugal decentralized deep learning."""


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run directory (default: runs/<time>-<protocol>)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a finished run directory.")] = False,
    report: ReportOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run one experiment and write its run directory (and report.html).

    Ctrl-C stops after the current round with a checkpoint; gossamer resume continues.

    Example: gossamer run examples/quickstart.yaml --set protocol=periodic -s protocol.period=5
    """
    from gossamer.runner import run as run_experiment

    try:
        resolved = load_config(config, set_ or ())
    except ConfigError as error:
        _fail(str(error))
    out = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{resolved.protocol.name}"
    _execute(
        lambda progress: run_experiment(
            resolved, out=out, force=force, progress=progress, report=report
        ),
        resolved.rounds,
        out,
        quiet,
        as_json,
    )


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="An interrupted run directory.")],
    report: ReportOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Continue an interrupted run from its last checkpoint.

    The finished metrics equal those of an uninterrupted run with the same config.

    Example: gossamer resume runs/20261122-101500-dpsgd
    """
    from gossamer.runner import resume as resume_run

    if not (run_dir / "config.yaml").is_file():
        _fail(f"resume: '{run_dir}' is not a run directory (no config.yaml)")
    try:
        rounds = load_config(run_dir / "config.yaml").rounds
    except ConfigError as error:
        _fail(f"resume: {error}")
    _execute(
        lambda progress: resume_run(run_dir, progress=progress, report=report),
        rounds,
        run_dir,
        quiet,
        as_json,
    )


def _execute(start, rounds: int, out: Path, quiet: bool, as_json: bool) -> None:
    """Run with a progress bar when on a terminal; turn errors into one message."""
    from gossamer.runner import RunInterrupted

    show = not quiet and not as_json and console.is_terminal
    progress = _progress_bar(rounds) if show else None
    try:
        if progress is not None:
            with progress:
                result = start(progress.update_row)
        else:
            result = start(None)
    except ConfigError as error:
        _fail(str(error))
    except RunInterrupted as stop:
        _fail(
            f"stopped after round {stop.rounds_done} with a checkpoint; continue with: "
            f"gossamer resume {out}",
            code=130,
        )
    except KeyboardInterrupt:
        _fail(f"interrupted; '{out}' holds an unfinished run (no summary.json)", code=130)
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2, default=float))
    elif not quiet:
        _summary_table(result.summary, out)


@app.command()
def report(
    dirs: Annotated[list[Path], typer.Argument(help="Run or comparison directories.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (several runs).")
    ] = None,
) -> None:
    """Write report.html (self-contained, works offline) and report.md for runs.

    Example: gossamer report runs/quickstart runs/periodic --out runs/report
    """
    from gossamer.report import write_report

    try:
        target = write_report(dirs, out)
    except ConfigError as error:
        _fail(str(error))
    typer.echo(f"{target / 'report.html'}")


@app.command("config")
def show_config(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (every default filled in) as YAML.

    Example: gossamer config --set topology.kind=ring > my.yaml
    """
    try:
        typer.echo(dump_config(load_config(config, set_ or ())), nl=False)
    except ConfigError as error:
        _fail(str(error))


@app.command()
def topology(
    config: ConfigArg = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Describe the configured graph: nodes, edges, degrees, spectral gap of W.

    Example: gossamer topology --set topology.kind=exponential --set nodes=64
    """
    from gossamer.topology import build_topology

    try:
        resolved = load_config(config, set_ or ())
        described = build_topology(resolved.topology, resolved.nodes, resolved.seed).summary()
    except ConfigError as error:
        _fail(str(error))
    described = {"kind": resolved.topology.kind, "weights": resolved.topology.weights, **described}
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    table = Table(title="topology", show_header=False)
    for key, value in described.items():
        table.add_row(key, _fmt(value))
    Console().print(table)


@app.command("compare")
def compare_variants(
    config: ConfigArg = None,
    set_: SetOpt = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            "--protocol",
            "-p",
            metavar="'NAME KEY=VALUE ...'",
            help="Add a variant that changes the protocol (repeatable).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Comparison directory (default: runs/<time>-compare)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a finished comparison.")] = False,
    report: ReportOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Run several variants on the same data, partition, topology and initial model.

    Variants come from a `variants:` mapping in CONFIG and/or --protocol options.

    Example: gossamer compare --protocol dpsgd --protocol 'periodic period=10' -p nosync
    """
    from gossamer.compare import compare, load_variants
    from gossamer.runner import RunInterrupted

    try:
        variants = load_variants(config, set_ or (), protocol or ())
    except ConfigError as error:
        _fail(str(error))
    out = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-compare"
    show = not quiet and not as_json and console.is_terminal
    bars: list[_RunProgress] = []

    def progress(name: str):
        if not show:
            return None
        if bars:
            bars[-1].stop()
        bars.append(_progress_bar(variants[name].rounds, name))
        bars[-1].start()
        return bars[-1].update_row

    try:
        result = compare(
            config,
            overrides=set_ or (),
            protocols=protocol or (),
            out=out,
            force=force,
            progress=progress,
        )
    except ConfigError as error:
        _fail(str(error))
    except (KeyboardInterrupt, RunInterrupted):
        _fail(
            f"stopped; '{out}' holds an unfinished comparison: rerun the same command with "
            f"--out {out} and without --force to continue (finished variants are kept, "
            "the stopped one resumes)",
            code=130,
        )
    finally:
        if bars:
            bars[-1].stop()
    if report:
        from gossamer.report import write_report

        write_report([out])
    if as_json:
        typer.echo((out / "comparison.json").read_text(), nl=False)
        return
    if not quiet:
        table = Table(title=f"gossamer compare: {len(variants)} variants", show_header=True)
        shown = {
            "variant": "variant",
            "test_accuracy_mean": "accuracy",
            "megabytes_sent": "MB sent",
            "energy_joules": "energy J",
            "cumulative_prequential_loss": "cum. loss",
            "pareto_optimal": "pareto",
        }
        shown.update(
            {
                c: f"recovery ({c.rsplit('_', 1)[1]})"
                for c in result.table
                if c.startswith("recovery_rounds")
            }
        )
        columns = [c for c in shown if c in result.table]
        for column in columns:
            table.add_column(shown[column])
        for i in range(len(result.table["variant"])):
            table.add_row(*(_fmt(result.table[c][i]) for c in columns))
        Console().print(table)
        Console().print(f"comparison directory: {out}")


@app.command("sweep")
def sweep_grid(
    config: ConfigArg = None,
    set_: SetOpt = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", metavar="KEY=V1,V2,...", help="Values of a key (repeatable)."),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per point: seed, seed+1, ...")] = 1,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Sweep directory (default: runs/<time>-sweep)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite a finished sweep.")] = False,
    report: ReportOpt = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """Run the product of grid values over several seeds; mean and 95% CI per point.

    Example: gossamer sweep --grid protocol.period=1,5,20 --set protocol=periodic --seeds 3
    """
    from gossamer.runner import RunInterrupted
    from gossamer.sweep import parse_grid, plan, sweep

    try:
        base = load_config(config, set_ or ())
        runs = plan(base, parse_grid(grid or ()), seeds)  # validates every point first
    except ConfigError as error:
        _fail(str(error))
    out = out or Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-sweep"
    if not quiet and not as_json:
        typer.echo(f"sweep: {len(runs)} runs into {out}")
    started = [0]

    def announce(point: dict, seed: int) -> None:
        started[0] += 1
        if not quiet and not as_json:
            where = ", ".join(f"{k}={v}" for k, v in point.items()) or "base"
            typer.echo(f"[{started[0]}/{len(runs)}] {where}, seed {seed}")

    try:
        result = sweep(base, grid=grid or (), seeds=seeds, out=out, force=force, progress=announce)
    except ConfigError as error:
        _fail(str(error))
    except (KeyboardInterrupt, RunInterrupted):
        _fail(
            f"stopped; '{out}' holds an unfinished sweep: rerun the same command with "
            f"--out {out} and without --force to continue (finished runs are kept, "
            "the stopped one resumes)",
            code=130,
        )
    if report:
        from gossamer.report import write_report

        write_report([out])
    if as_json:
        typer.echo((out / "sweep.json").read_text(), nl=False)
        return
    if not quiet:
        table = Table(title=f"gossamer sweep: {len(result.points)} points x {seeds} seeds")
        keys = list(parse_grid(grid or ()))
        for column in [*keys, "seeds", "accuracy (95% CI)", "MB sent", "energy J"]:
            table.add_column(column)
        t = result.table
        for i in range(len(t["seeds"])):
            ci = (
                f"{t['test_accuracy_mean'][i]:.4f} [{_fmt(t['test_accuracy_mean_ci_low'][i])}, "
                f"{_fmt(t['test_accuracy_mean_ci_high'][i])}]"
            )
            table.add_row(
                *(str(t[k][i]) for k in keys),
                str(t["seeds"][i]),
                ci,
                _fmt(t["megabytes_sent"][i]),
                _fmt(t["energy_joules"][i]),
            )
        Console().print(table)
        Console().print(f"sweep directory: {out}")


@app.command()
def delta(
    config: ConfigArg = None,
    set_: SetOpt = None,
    periods: Annotated[int, typer.Option(min=1, help="Periods to measure.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Suggest a starting delta for dynamic averaging from a short calibration run.

    Measures the squared drift of every model over one period without communication
    (on the base config of a comparison file).

    Example: gossamer delta examples/dynamic_averaging.yaml --set protocol=dynamic
    """
    from gossamer.protocols import suggest_delta

    try:
        source = read_config_file(config) if config is not None else None
        if source is not None:
            source.pop("variants", None)  # a comparison file: calibrate on its base config
        suggestion = suggest_delta(source, periods=periods, overrides=set_ or ())
    except ConfigError as error:
        _fail(str(error))
    if as_json:
        typer.echo(json.dumps(suggestion, indent=2))
        return
    table = Table(title="squared drift of a model over one period, without sync", show_header=False)
    for key, value in suggestion.items():
        table.add_row(key.replace("_", " "), _fmt(value))
    Console().print(table)


@app.command()
def devices(
    config: ConfigArg = None,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the device profiles and the training energy and budget they imply.

    Uses the configured model (size, FLOPs), batch size, local steps and battery share.

    Example: gossamer devices --set model.hidden=[200] --set energy.battery_fraction=0.1
    """
    from gossamer.data import dataset_info
    from gossamer.energy import build_energy_model, describe
    from gossamer.models import build_model

    try:
        source = read_config_file(config) if config is not None else None
        if source is not None:
            source.pop("variants", None)  # a comparison file: its base config
        resolved = load_config(source, set_ or ())
        shape, classes = dataset_info(resolved.data)
        model = build_model(resolved.model, shape, classes)
        per_round = resolved.data.batch_size * resolved.local_steps
        energy = build_energy_model(
            resolved.energy,
            len(resolved.energy.devices) or 64,
            model.num_params,
            model.forward_flops_per_sample(),
            per_round,
            resolved.seed,
        )
    except ConfigError as error:
        _fail(str(error))
    rows = describe(energy, per_round)
    for row in rows:
        row.pop("nodes")
    header = {
        "model": resolved.model.name,
        "parameters": model.num_params,
        "forward_mflops_per_sample": model.forward_flops_per_sample() / 1e6,
        "samples_per_training_round": per_round,
        "scaling": resolved.energy.scaling,
        "battery_fraction": resolved.energy.battery_fraction,
    }
    if as_json:
        typer.echo(json.dumps({**header, "devices": rows}, indent=2))
        return
    Console().print(", ".join(f"{k.replace('_', ' ')}: {_fmt(v)}" for k, v in header.items()))
    table = Table(title="device profiles", show_header=True)
    titles = {
        "device": "device",
        "inference_ms_mobilenet_v2": "MobileNetV2 ms",
        "max_power_w": "power W",
        "battery_wh": "battery Wh",
        "training_ms_per_sample": "train ms/sample",
        "joules_per_round": "J/round",
        "budget_rounds": "budget (rounds)",
    }
    for title in titles.values():
        table.add_column(title)
    for row in rows:
        table.add_row(*(_fmt(row[k]) for k in titles))
    Console().print(table)


class _RunProgress(Progress):
    """A progress bar that also shows the latest accuracy and traffic."""

    def update_row(self, rounds_done: int, row: dict[str, Any] | None) -> None:
        fields = {}
        if row is not None:
            fields = {"acc": row["test_accuracy_mean"], "mb": row["bytes_sent"] / 1e6}
        self.update(self.task_ids[0], completed=rounds_done, **fields)


def _progress_bar(rounds: int, label: str = "round") -> _RunProgress:
    progress = _RunProgress(
        TextColumn(label),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("acc {task.fields[acc]:.3f}  sent {task.fields[mb]:,.1f} MB"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    progress.add_task("run", total=rounds, acc=0.0, mb=0.0)
    return progress


def _summary_table(summary: dict[str, Any], out: Path) -> None:
    table = Table(
        title=f"gossamer run: {summary['protocol']}, {summary['nodes']} nodes, "
        f"{summary['rounds']} rounds",
        show_header=False,
    )
    final, totals = summary["final"], summary["totals"]
    rows = [
        ("test accuracy (mean over nodes)", final["test_accuracy_mean"]),
        (
            "test accuracy (min / max)",
            f"{final['test_accuracy_min']:.4f} / {final['test_accuracy_max']:.4f}",
        ),
        ("average model accuracy", final["avg_model_accuracy"]),
        ("consensus distance", final["consensus_distance"]),
        ("messages", totals["messages"]),
        ("MB sent", totals["bytes_sent"] / 1e6),
        ("local steps", totals["local_steps"]),
        ("energy (J)", totals["energy_joules"]),
        ("wall time (s)", summary["wall_seconds"]),
        ("run directory", str(out)),
    ]
    for key, value in rows:
        table.add_row(key, _fmt(value))
    Console().print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return f"{value:,.4f}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside a command
        sys.exit(130)
