"""``gossamer`` command line: thin commands over the Python API, one module per group."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from gossamer._version import __version__
from gossamer.cli import compare, inspect, run

app = typer.Typer(
    name="gossamer",
    help="Fast, honest simulation of frugal decentralized deep learning.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


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


app.command()(run.run)
app.command()(run.resume)
app.command()(inspect.report)
app.command("config")(inspect.config)
app.command()(inspect.topology)
app.command()(compare.compare)
app.command()(compare.sweep)
app.command()(inspect.delta)
app.command()(inspect.plan)
app.command()(inspect.devices)
app.command("list")(inspect.list_components)


def main() -> None:
    """Console entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - outside a command
        sys.exit(130)
