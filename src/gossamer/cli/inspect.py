"""Commands that look without running: config, topology, devices, delta, list, report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gossamer.cli.options import ConfigArg, JsonOpt, RanksOpt, SetOpt

if TYPE_CHECKING:
    from gossamer.cli.output import Output

# Each command imports what it needs when it runs: `gossamer --help` imports this module.


def config(config: ConfigArg = None, set_: SetOpt = None) -> None:
    """Print the fully resolved config (every default filled in) as YAML.

    Example: gossamer config --set topology.kind=ring > my.yaml
    """
    from gossamer.cli.output import errors_as_messages
    from gossamer.config import dump_config, load_config

    with errors_as_messages():
        typer.echo(dump_config(load_config(config, set_ or ())), nl=False)


def topology(config: ConfigArg = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """Describe the configured graph: nodes, edges, degrees, spectral gap of W.

    Example: gossamer topology --set topology.kind=exponential --set nodes=64
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.config import load_config
    from gossamer.sim.topology import describe_topology

    with errors_as_messages():
        described = describe_topology(load_config(config, set_ or ()))
    output = Output(as_json=as_json)
    output.json(described) if as_json else output.pairs(described, title="topology")


def devices(config: ConfigArg = None, set_: SetOpt = None, as_json: JsonOpt = False) -> None:
    """List the device profiles and the training energy and budget they imply.

    Uses the configured model (size, FLOPs), batch size, local steps and battery share.

    Example: gossamer devices --set model.hidden=[200] --set energy.battery_fraction=0.1
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.config import comparison_base, load_config
    from gossamer.sim.energy import device_table

    with errors_as_messages():
        listing = device_table(load_config(comparison_base(config), set_ or ()))
    output = Output(as_json=as_json)
    if as_json:
        output.json(listing)
        return
    rows = listing.pop("devices")
    output.line(", ".join(f"{k.replace('_', ' ')}: {Output.number(v)}" for k, v in listing.items()))
    titles = {
        "device": "device",
        "inference_ms_mobilenet_v2": "MobileNetV2 ms",
        "max_power_w": "power W",
        "battery_wh": "battery Wh",
        "training_ms_per_sample": "train ms/sample",
        "joules_per_round": "J/round",
        "budget_rounds": "budget (rounds)",
    }
    output.table([{t: row[k] for k, t in titles.items()} for row in rows], "device profiles")


def delta(
    config: ConfigArg = None,
    set_: SetOpt = None,
    periods: Annotated[int, typer.Option(min=1, help="Sync cycles to measure.")] = 5,
    violation_rate: Annotated[
        float | None,
        typer.Option(help="Target share of checks that communicate (default 0.1)."),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(help="Target bytes relative to periodic averaging (instead)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Calibrate delta for dynamic averaging: aimed at a violation rate or a budget.

    Runs the experiment without communication, synchronized by hand every K = 1 / rate
    checks, and measures the largest squared distance to the reference at each check
    (on the base config of a comparison file).

    Example: gossamer delta examples/dynamic_averaging.yaml --set protocol=dynamic --budget 0.2
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.workflow import suggest_delta

    with errors_as_messages():
        suggestion = suggest_delta(
            config,
            periods=periods,
            overrides=set_ or (),
            violation_rate=violation_rate,
            budget=budget,
        )
    output = Output(as_json=as_json)
    if as_json:
        output.json(suggestion)
        return
    named = {key.replace("_", " "): value for key, value in suggestion.items()}
    named["divergence median by check"] = ", ".join(
        Output.number(v) for v in suggestion["divergence_median_by_check"]
    )
    output.pairs(named, title="largest squared distance to the reference, by check since sync")


def plan(
    config: ConfigArg = None,
    set_: SetOpt = None,
    ranks: RanksOpt = 1,
    probe: Annotated[
        bool, typer.Option("--probe/--no-probe", help="Time two rounds and an evaluation.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """What a run will take: its memory per rank (by part) against what this machine
    has, and, from a probe of two rounds and an evaluation, its time.

    Exits with status 1 when the run does not fit in memory (2: a bad config).

    Example: gossamer plan examples/scaling_256.yaml --set nodes=4096
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.workflow.planning import plan_run

    with errors_as_messages():
        planned = plan_run(config, overrides=set_ or (), ranks=ranks, probe=probe)
    output = Output(as_json=as_json)
    if as_json:
        output.json(planned)
    else:
        show_plan(planned, ranks, output)
    if not planned["fits"]:
        raise typer.Exit(1)


def show_plan(planned: dict, ranks: int, output: Output) -> None:
    """The plan as a table of memory parts and times."""
    from gossamer.sim.memory import gigabytes

    rows = {f"memory: {name}": gigabytes(size) for name, size in planned["memory_per_rank"].items()}
    per_rank = " per rank" if ranks > 1 else ""
    rows[f"memory: total{per_rank}"] = gigabytes(planned["memory_total"])
    available = planned["memory_available"]
    where = " on the GPU" if planned["memory_of"] == "gpu" else ""
    rows[f"memory available{where}"] = gigabytes(available) if available is not None else "unknown"
    rows["fits"] = (
        "yes" if planned["fits"] else f"no: {planned['largest']}; use {planned['advice']}"
    )
    if "round_seconds" in planned:
        rows["seconds a round"] = planned["round_seconds"]
        rows["seconds an evaluation"] = planned["evaluation_seconds"]
        rows["seconds the final evaluation"] = planned["final_evaluation_seconds"]
        rows["evaluations"] = planned["evaluations"]
        rows["estimated run (h)"] = planned["run_seconds"] / 3600
        rows["share evaluating"] = planned["evaluating_share"]
        if planned["evaluation_advice"]:
            rows["to evaluate less"] = planned["evaluation_advice"]
    output.pairs(rows, title=f"gossamer plan: {planned['nodes']} nodes on {ranks} rank(s)")


def list_components(as_json: JsonOpt = False) -> None:
    """List what a config can name: protocols, models, optimizers, datasets, compressors,
    aggregators, topologies.

    One line each, without importing torch (plugins are imported).

    Example: gossamer list --json
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.config import REGISTRIES, TOPOLOGY_KINDS

    # sections inside another
    where = {"compression": "protocol.compression", "aggregator": "protocol.aggregator"}
    with errors_as_messages():
        kinds = {kind: registry.describe() for kind, registry in REGISTRIES.items()}
    kinds["topology"] = dict(TOPOLOGY_KINDS)
    output = Output(as_json=as_json)
    if as_json:
        output.json(kinds)
        return
    key = {kind: f"{where.get(kind, kind)}.name" for kind in REGISTRIES} | {
        "dataset": "data.dataset",  # the config keys that name them
        "topology": "topology.kind",
    }
    listing = {key[kind]: named for kind, named in kinds.items()}
    gap = ""
    for key, named in listing.items():
        output.line(f"{gap}{key}:")
        width = max(map(len, named))
        for name, what in named.items():
            output.line(f"  {name:<{width}}  {what}")
        gap = "\n"


def report(
    dirs: Annotated[list[Path], typer.Argument(help="Run or comparison directories.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write (several runs).")
    ] = None,
    formats: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            "-f",
            metavar="pdf|svg",
            help="Also write every plot in report_files/ as PDF or SVG (repeatable).",
        ),
    ] = None,
) -> None:
    """Write report.html (self-contained, works offline) and report.md for runs.

    Example: gossamer report runs/quickstart runs/periodic --out runs/report --format pdf
    """
    from gossamer.cli.output import errors_as_messages
    from gossamer.report import write_report

    with errors_as_messages():
        target = write_report(dirs, out, formats=["png", *(formats or [])])
    typer.echo(f"{target / 'report.html'}")
