"""Options shared by the commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigArg = Annotated[
    Path | None,
    typer.Argument(help="YAML or TOML config file; omit for the built-in quickstart."),
]


def key_values(values: list[str] | None) -> list[str] | None:
    """``--set`` takes one KEY=VALUE word: ``--set rounds 50`` would take ``rounds`` as the
    override and ``50`` as the config file, so it is refused here, naming the fix."""
    for value in values or ():
        key, sep, _ = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(
                f"expected KEY=VALUE in one word (e.g. --set rounds=50, or --set "
                f"'model.hidden=[64, 32]'); got {value!r}"
            )
    return values


SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key, e.g. protocol.period=5.",
        callback=key_values,
    ),
]
ReportOpt = Annotated[
    bool, typer.Option("--report/--no-report", help="Write report.html and report.md.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or table.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ProgressOpt = Annotated[
    str,
    typer.Option(
        "--progress",
        metavar="auto|bar|lines|off",
        help="Progress on stderr: a live bar (auto on a terminal), plain lines every 5% of "
        "the rounds (auto in logs, e.g. nohup), or off.",
    ),
]
RanksOpt = Annotated[
    int,
    typer.Option(
        "--ranks",
        help="Shard the nodes over this many processes on this machine (torch.distributed); "
        "the numbers are those of one process. Several machines: torchrun (docs/distributed.md).",
    ),
]


def out_option(what: str) -> type:
    """``--out``/``-o`` for a command writing ``what`` (its default named in the help)."""
    return Annotated[Path | None, typer.Option("--out", "-o", help=f"{what}.")]


def force_option(what: str) -> type:
    return Annotated[bool, typer.Option(help=f"Overwrite a finished {what}.")]
