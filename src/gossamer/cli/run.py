"""``gossamer run`` and ``gossamer resume``: one experiment, its run directory and table."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gossamer.cli.options import (
    ConfigArg,
    JsonOpt,
    ProgressOpt,
    QuietOpt,
    RanksOpt,
    ReportOpt,
    SetOpt,
    force_option,
    out_option,
)

# Each command imports what it needs when it runs: `gossamer --help` imports this module.
if TYPE_CHECKING:
    from gossamer.cli.output import Output
    from gossamer.results import Result


def run(
    config: ConfigArg = None,
    set_: SetOpt = None,
    out: out_option("Run directory (default: runs/<time>-<protocol>)") = None,
    force: force_option("run directory") = False,
    report: ReportOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    ranks: RanksOpt = 1,
    progress: ProgressOpt = "auto",
) -> None:
    """Run one experiment and write its run directory (and report.html).

    Ctrl-C stops after the current round with a checkpoint; gossamer resume continues.

    Example: gossamer run examples/quickstart.yaml --set protocol=periodic -s protocol.period=5
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.config import load_config
    from gossamer.workflow import run as run_experiment

    with errors_as_messages():
        resolved = load_config(config, set_ or ())
    out = out or default_out(resolved.protocol.name)
    output = Output(quiet or not_rank_zero(), as_json and not not_rank_zero())
    result = follow(
        lambda display: run_experiment(
            resolved, out=out, force=force, progress=display, report=report, ranks=ranks
        ),
        out,
        output,
        ranks,
        progress,
    )
    show_run(result, out, output)


def resume(
    run_dir: Annotated[Path, typer.Argument(help="An interrupted run directory.")],
    report: ReportOpt = True,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    ranks: RanksOpt = 1,
    progress: ProgressOpt = "auto",
) -> None:
    """Continue an interrupted run from its last checkpoint, on any number of ranks.

    The finished metrics equal those of an uninterrupted run with the same config.

    Example: gossamer resume runs/20261122-101500-dpsgd
    """
    from gossamer.cli.output import Output, errors_as_messages
    from gossamer.workflow import resume as resume_run
    from gossamer.workflow import resume_config

    with errors_as_messages():
        resume_config(run_dir)
    output = Output(quiet or not_rank_zero(), as_json and not not_rank_zero())
    result = follow(
        lambda display: resume_run(run_dir, progress=display, report=report, ranks=ranks),
        run_dir,
        output,
        ranks,
        progress,
    )
    show_run(result, run_dir, output)


def default_out(what: str) -> Path:
    return Path("runs") / f"{datetime.now():%Y%m%d-%H%M%S}-{what}"


def not_rank_zero() -> bool:
    """Under torchrun every rank runs the command; only rank 0 prints."""
    return int(os.environ.get("RANK", "0")) != 0


def follow(
    start: Callable[[Any], Result],
    out: Path,
    output: Output,
    ranks: int = 1,
    mode: str = "auto",
) -> Result:
    """Run ``start(display)`` with the ``--progress`` display; errors as one message.
    With ``ranks`` > 1 the workers run elsewhere: a line says so, and no progress."""
    from gossamer.cli.output import errors_as_messages, fail
    from gossamer.workflow import RunInterrupted

    try:
        with errors_as_messages():
            display = output.progress(mode) if ranks == 1 else None
            if ranks != 1:
                output.line(f"running on {ranks} ranks (torch.distributed) into {out}")
            return start(display)
    except RunInterrupted as stop:
        fail(
            f"stopped after round {stop.rounds_done} with a checkpoint; continue with: "
            f"gossamer resume {out}",
            code=130,
        )
    except KeyboardInterrupt:
        fail(f"interrupted; '{out}' holds an unfinished run (no summary.json)", code=130)


def show_run(result: Result, out: Path, output: Output) -> None:
    """The summary as JSON, or the table of a run's final numbers."""
    from gossamer.cli.output import Output
    from gossamer.report.tables import format_bytes, format_energy

    summary = result.summary
    if output.as_json:
        output.json({**summary, "run_directory": str(out)})
        return
    final, totals = summary["final"], summary["totals"]
    low, high = final["test_accuracy_min"], final["test_accuracy_max"]
    rows = {
        "test accuracy (mean over nodes)": final["test_accuracy_mean"],
        "test accuracy (min / max)": f"{Output.number(low)} / {Output.number(high)}",
        "average model accuracy": final["avg_model_accuracy"],
        "consensus distance": final["consensus_distance"],
        "messages": totals["messages"],
    }
    if not result.config.network.ideal:  # churn or loss: what was lost, and the clock
        rows["messages lost"] = totals["messages_lost"]
        rows["simulated time (s)"] = totals["simulated_seconds"]
    output.pairs(
        {
            **rows,
            "sent": format_bytes(totals["bytes_sent"]),
            "local steps": totals["local_steps"],
            "energy": format_energy(totals["energy_joules"]),
            "wall time, set-up excluded (s)": summary["wall_seconds"],  # docs/outputs.md
            "run directory": str(out),
        },
        title=f"gossamer run: {summary['protocol']}, {summary['nodes']} nodes, "
        f"{summary['rounds']} rounds",
    )
