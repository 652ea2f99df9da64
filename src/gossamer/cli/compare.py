"""``gossamer compare`` and ``gossamer sweep``: many runs on identical conditions."""

from __future__ import annotations

from typing import Annotated

import typer

from gossamer.cli.options import (
    ConfigArg,
    JsonOpt,
    ProgressOpt,
    QuietOpt,
    ReportOpt,
    SetOpt,
    force_option,
    out_option,
)
from gossamer.cli.run import default_out

# Each command imports what it needs when it runs: `gossamer --help` imports this module.

#: Columns of comparison.csv shown in the terminal, and their titles.
SHOWN = {
    "variant": "variant",
    "test_accuracy_mean": "accuracy",
    "megabytes_sent": "sent",
    "energy_joules": "energy",
    "cumulative_prequential_loss": "cum. loss",
    "pareto_optimal": "pareto",
}


def compare(
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
    out: out_option("Comparison directory (default: runs/<time>-compare)") = None,
    force: force_option("comparison") = False,
    report: ReportOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    progress: ProgressOpt = "auto",
    only: Annotated[
        list[str] | None,
        typer.Option("--only", metavar="NAME", help="Run only this variant (repeatable)."),
    ] = None,
) -> None:
    """Run several variants on the same data, partition, topology and initial model.

    Variants come from a `variants:` mapping in CONFIG and/or --protocol options.

    Example: gossamer compare --protocol dpsgd --protocol 'periodic period=10' -p nosync
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.workflow import RunInterrupted, load_variants
    from gossamer.workflow import compare as compare_variants
    from gossamer.workflow.compare import select_variants

    with errors_as_messages():
        variants = select_variants(load_variants(config, set_ or (), protocol or ()), only or ())
    out = out or default_out("compare")
    output = Output(quiet, as_json)
    try:
        with errors_as_messages():
            result = compare_variants(
                config,
                overrides=set_ or (),
                protocols=protocol or (),
                out=out,
                force=force,
                progress=output.progress(progress),  # labelled "variant k/n name"
                report=report,
                only=only or (),
            )
    except (KeyboardInterrupt, RunInterrupted):
        stopped(out, "comparison", "variants")
    if as_json:
        typer.echo((out / "comparison.json").read_text(), nl=False)
        return
    table = result.table
    shown = dict(SHOWN)
    for column in table:
        if column.startswith("recovery_rounds"):
            shown[column] = f"recovery ({column.rsplit('_', 1)[1]})"
    columns = [c for c in shown if c in table]
    rows = [
        {shown[c]: _cell(c, table[c][i]) for c in columns} for i in range(len(table["variant"]))
    ]
    output.table(rows, title=f"gossamer compare: {len(variants)} variants")
    output.line(f"comparison directory: {out}")


def _cell(column: str, value):
    """Bytes and Joules in the unit of their size; other values as they are."""
    from gossamer.report.tables import format_bytes, format_energy

    if column == "megabytes_sent":
        return format_bytes(float(value) * 1e6)
    return format_energy(value) if column == "energy_joules" else value


def sweep(
    config: ConfigArg = None,
    set_: SetOpt = None,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", "-g", metavar="KEY=V1,V2,...", help="Values of a key (repeatable)."),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per point: seed, seed+1, ...")] = 1,
    out: out_option("Sweep directory (default: runs/<time>-sweep)") = None,
    force: force_option("sweep") = False,
    report: ReportOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    progress: ProgressOpt = "auto",
) -> None:
    """Run the product of grid values over several seeds; mean and 95% CI per point.

    Example: gossamer sweep --grid protocol.period=1,5,20 --set protocol=periodic --seeds 3
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.config import load_config
    from gossamer.report import format_interval
    from gossamer.workflow import RunInterrupted, parse_grid, plan
    from gossamer.workflow import sweep as sweep_grid

    with errors_as_messages():
        base = load_config(config, set_ or ())
        values = parse_grid(grid or ())
        runs = plan(base, values, seeds)  # validates every point first
    out = out or default_out("sweep")
    output = Output(quiet, as_json)
    output.line(f"sweep: {len(runs)} runs into {out}")
    try:
        with errors_as_messages():
            result = sweep_grid(
                base,
                grid=grid or (),
                seeds=seeds,
                out=out,
                force=force,
                progress=output.progress(progress),  # labelled "variant k/n point, seed s"
                report=report,
            )
    except (KeyboardInterrupt, RunInterrupted):
        stopped(out, "sweep", "runs")
    if as_json:
        typer.echo((out / "sweep.json").read_text(), nl=False)
        return
    t = result.table
    rows = []
    for i in range(len(t["seeds"])):
        low, high = t["test_accuracy_mean_ci_low"][i], t["test_accuracy_mean_ci_high"][i]
        rows.append(
            {
                **{key: str(t[key][i]) for key in values},
                "seeds": t["seeds"][i],
                "accuracy (95% CI)": format_interval(t["test_accuracy_mean"][i], low, high),
                "sent": _cell("megabytes_sent", t["megabytes_sent"][i]),
                "energy": _cell("energy_joules", t["energy_joules"][i]),
            }
        )
    output.table(rows, title=f"gossamer sweep: {len(result.points)} points x {seeds} seeds")
    output.line(f"sweep directory: {out}")


def stopped(out, kind: str, runs: str) -> None:
    """Ctrl-C stopped a comparison or sweep: say how to continue it."""
    from gossamer.cli.output import fail

    fail(
        f"stopped; '{out}' holds an unfinished {kind}: rerun the same command with "
        f"--out {out} and without --force to continue (finished {runs} are kept, "
        "the stopped one resumes)",
        code=130,
    )
