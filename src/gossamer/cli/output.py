"""One output helper for every command: tables, JSON, progress and errors.

Tables go to stdout through rich, numbers in one format (``report.tables``); progress
goes to stderr (``gossamer.workflow.progress``): a live bar on a terminal, plain lines
in a log; ``--json`` prints JSON alone; ``--quiet`` prints nothing but errors. Errors
print one line ``error: ...`` with arguments spelled as flags
(``GossamerError.cli_message``) and exit with status 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from gossamer.config import GossamerError
from gossamer.report import format_number

if TYPE_CHECKING:  # imported when shown: `gossamer list` needs no torch
    from gossamer.workflow.progress import ProgressDisplay

STDERR = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextlib.contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn gossamer's errors into one line and exit status 2 (no traceback)."""
    try:
        yield
    except GossamerError as error:
        fail(error.cli_message())


class Output:
    """Where a command's results go: a table for people, JSON for scripts, or nothing."""

    number = staticmethod(format_number)  # the one number format

    def __init__(self, quiet: bool = False, as_json: bool = False):
        self.quiet, self.as_json = quiet, as_json

    def json(self, value: Any) -> None:
        """``value`` as strict JSON (NaN and infinities as null), what scripts parse."""
        from gossamer.results.files import json_text

        typer.echo(json_text(value))

    def line(self, text: str) -> None:
        if not self.quiet and not self.as_json:
            typer.echo(text)

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        title: str | None = None,
        header: bool = True,
    ) -> None:
        """Rows (dicts with the same keys) as a table; ``header=False`` for key-value pairs."""
        if self.quiet or self.as_json or not rows:
            return
        table = Table(title=title, show_header=header)
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(format_number(value) for value in row.values()))
        Console().print(table)

    def pairs(self, values: Mapping[str, Any], title: str | None = None) -> None:
        """A two-column table of names and values."""
        self.table([{"key": k, "value": v} for k, v in values.items()], title, header=False)

    def progress(self, mode: str = "auto") -> ProgressDisplay | None:
        """The run's progress display on stderr (``--progress``): a live bar on a
        terminal, plain lines otherwise; None with ``--quiet``, ``--json`` or 'off'."""
        from gossamer.workflow.progress import progress_display

        display = progress_display(mode, STDERR)  # a bad mode is refused, quiet or not
        return None if self.quiet or self.as_json else display
