"""Progress of a run for people: a live bar (terminal or Jupyter) or plain lines (logs).

Both displays are callbacks of the round loop and show the same fields: the set-up
(reading data and building the population, then evaluating the initial models) as
set-up, then ``round k/n``, the latest accuracy, the bytes sent so far, the time
elapsed and the estimated time left (ETA: the rounds left at the average pace of
the rounds done by this process). In a comparison or a sweep the label says which
run it is (``variant 2/3 periodic``).

``progress=True`` (Python API) and ``--progress auto`` (command line) choose the bar
on a terminal or in Jupyter and plain lines anywhere else (nohup, batch logs): one
line per 5% of the rounds, and one after any round when 5 minutes passed without a
line, so a log shows a slow run is alive.

A run estimated to take more than an hour says so once, up front: after two rounds
of this process (or 30 s of rounds, whichever comes first) every display prints
``this run will take about 2:46:40 (...)``, so a typo in ``rounds`` or
``local_steps`` is seen before the night is spent (``gossamer plan`` estimates it
before running).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from gossamer.config import ConfigError, arg
from gossamer.report.tables import format_bytes
from gossamer.results import Result
from gossamer.sim import Simulation
from gossamer.workflow.callbacks import Callback, Progress, ProgressCallback

MODES = ("auto", "bar", "lines", "off")
LONG_RUN_SECONDS = 3600.0  # runs estimated longer than this say so up front


def _duration(seconds: float) -> str:
    """``m:ss`` under an hour, ``h:mm:ss`` above."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressDisplay(Callback):
    """What a progress display knows of the run it follows; subclasses show it.

    ``begin(rounds, label)`` starts following a run (the set-up begins then); the
    loop's hooks move it through the set-up and the rounds; ``close()`` ends it. One
    display can follow several runs in turn (a comparison's variants).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.active = False
        self.label = ""
        self.rounds = 0

    def begin(self, rounds: int, label: str = "") -> None:
        self.rounds, self.label, self.active = rounds, label, True
        self.phase = "set-up: reading data, building the population"
        self.done = 0
        self.accuracy: float | None = None
        self.bytes_sent = 0
        self._counted = 0  # rounds of the ledger added to bytes_sent
        self.began = self.clock()
        self.rounds_began: float | None = None  # when this process began its rounds
        self.first_round = 0
        self.estimated = False  # the long-run estimate was considered
        self.show()

    # ---------------------------------------------------------------- loop hooks
    def on_start(self, sim: Simulation) -> None:
        if not self.active:
            self.begin(sim.config.rounds, self.label)
        self._count_bytes(sim)
        if sim.history:  # resumed: where it stands
            self.accuracy = sim.history[-1]["test_accuracy_mean"]
        if not sim.history and sim.config.eval.initial:
            self.phase = "set-up: evaluating the initial models"
            self.show()
        else:
            self._rounds_begin(sim.next_round)

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        self._count_bytes(sim)
        if row is not None:
            self.accuracy = row["test_accuracy_mean"]
        if self.rounds_began is None:  # the initial evaluation ended the set-up
            self._rounds_begin(sim.next_round)
        self.done = sim.next_round
        self._estimate_up_front()
        self.show()

    def on_finish(self, sim: Simulation, result: Result) -> None:
        self.done = self.rounds

    def close(self) -> None:
        self.active = False

    # ---------------------------------------------------------------- state
    def _rounds_begin(self, next_round: int) -> None:
        self.rounds_began, self.first_round, self.done = self.clock(), next_round, next_round
        self.phase = "rounds"
        self.setup_seconds = self.rounds_began - self.began
        self.rounds_start()

    def _count_bytes(self, sim: Simulation) -> None:
        records = sim.ledger.per_round
        self.bytes_sent += sum(r["bytes_sent"] for r in records[self._counted :])
        self._counted = len(records)

    def _estimate_up_front(self) -> None:
        """Once a run has a pace (two rounds, or 30 s of rounds), say when it will take
        more than an hour."""
        if self.estimated or self.rounds_began is None:
            return
        rounds_done, seconds = self.done - self.first_round, self.clock() - self.rounds_began
        if rounds_done < 2 and not (rounds_done >= 1 and seconds >= 30):
            return
        self.estimated = True
        total = self.clock() - self.began + (self.eta() or 0.0)
        if total > LONG_RUN_SECONDS:
            self.notice(
                f"this run will take about {_duration(total)} (from the pace of its first "
                f"{rounds_done} round{'s' if rounds_done > 1 else ''}: {self.rounds - self.done:,} "
                "rounds left); Ctrl-C stops it at a checkpoint, `gossamer plan` estimates "
                "before running"
            )

    def eta(self) -> float | None:
        """Seconds left at the average pace of this process's rounds (None before one)."""
        if self.rounds_began is None or self.done <= self.first_round:
            return None
        pace = (self.clock() - self.rounds_began) / (self.done - self.first_round)
        return pace * (self.rounds - self.done)

    def status(self) -> str:
        """``round 5/20  acc 0.812  sent 1.2 MB  elapsed 0:03  ETA 0:09`` (or the set-up)."""
        elapsed = f"elapsed {_duration(self.clock() - self.began)}"
        if self.phase != "rounds":
            return f"{self.phase}  {elapsed}"
        fields = [f"round {self.done}/{self.rounds}"]
        if self.accuracy is not None and math.isfinite(self.accuracy):
            fields.append(f"acc {self.accuracy:.3f}")
        fields += [f"sent {format_bytes(self.bytes_sent)}", elapsed]
        eta = self.eta()
        fields.append(f"ETA {_duration(eta)}" if eta is not None else "ETA -")
        return "  ".join(fields)

    # ---------------------------------------------------------------- shown by subclasses
    def show(self) -> None:
        """The state changed (set-up step, round done)."""

    def notice(self, text: str) -> None:
        """A message to show once, apart from the status (the long-run estimate)."""
        print(text, file=sys.stderr, flush=True)

    def rounds_start(self) -> None:
        """The set-up is over; the rounds begin."""


class LineProgress(ProgressDisplay):
    """Plain lines for logs: one per ``every_percent`` of the rounds, and one after any
    round when ``every_seconds`` passed since the last line.

    Args:
        stream: where lines go (default: ``sys.stderr`` as it is when a line is written).
        every_percent: a line each time this share of the rounds is done.
        every_seconds: at most this long between lines while rounds finish.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        every_percent: float = 5.0,
        every_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(clock)
        self.stream, self.every_percent, self.every_seconds = stream, every_percent, every_seconds

    def write(self, text: str) -> None:
        prefix = f"[{self.label}] " if self.label else ""
        stream = self.stream if self.stream is not None else sys.stderr
        print(prefix + text, file=stream, flush=True)
        self.last_line = self.clock()

    def notice(self, text: str) -> None:
        self.write(text)

    def begin(self, rounds: int, label: str = "") -> None:
        self._tick = -1
        super().begin(rounds, label)
        self.write(f"set-up ({rounds} rounds)")

    def rounds_start(self) -> None:
        what = "accuracy" if self.done else "initial accuracy"  # resumed: the latest
        accuracy = "" if self.accuracy is None else f"; {what} {self.accuracy:.3f}"
        resumed = f"; resumed at round {self.done}" if self.done else ""
        self.write(f"set-up done in {_duration(self.setup_seconds)}{accuracy}{resumed}")
        self._tick = self._ticks()

    def _ticks(self) -> int:
        return math.floor(self.done * 100 / (self.every_percent * self.rounds) + 1e-9)

    def show(self) -> None:
        if self.phase != "rounds" or self.done == self.first_round:
            return
        tick = self._ticks()
        if tick > self._tick or self.clock() - self.last_line >= self.every_seconds:
            self._tick = tick
            self.write(self.status())


class BarProgress(ProgressDisplay):
    """A live rich progress bar on ``console`` (a terminal's stderr).

    The bar pulses during the set-up, then fills with the rounds."""

    def __init__(self, console: Any = None, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.bar: Any = None

    def begin(self, rounds: int, label: str = "") -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        if self.bar is not None:
            self.bar.stop()
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task(label or "run", total=None, status="")
        self._shown_phase = None
        super().begin(rounds, label)
        self.bar.start()

    def show(self) -> None:
        if self.bar is None:
            return
        total = self.rounds if self.phase == "rounds" else None  # None: pulsing
        self.bar.update(self.task, total=total, completed=self.done, status=self.status())
        if self.phase != self._shown_phase:
            self.bar.refresh()  # every step of the set-up is seen, however short
            self._shown_phase = self.phase

    def notice(self, text: str) -> None:
        self.console.print(text)  # above the live bar

    def close(self) -> None:
        if self.bar is not None:
            self.show()
            self.bar.stop()
            self.bar = None
        super().close()


class NotebookProgress(ProgressDisplay):
    """A progress bar in a Jupyter notebook: one output updated in place (IPython's
    display handles, so no widget library is needed), an HTML ``<progress>`` element
    (indeterminate during the set-up) and the status; text where HTML is not shown.
    Updates at most every ``every_seconds`` (a fast run would flood the notebook)."""

    def __init__(self, every_seconds: float = 0.2, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.every_seconds = every_seconds
        self.handle: Any = None

    def bundle(self) -> dict[str, str]:
        import html

        label = html.escape(self.label or "run")
        value = f'value="{self.done}" max="{self.rounds}"' if self.phase == "rounds" else ""
        status = html.escape(self.status())
        return {
            "text/plain": f"{self.label or 'run'}  {self.status()}",
            "text/html": f"<div><b>{label}</b> <progress {value} style='width:30ch'>"
            f"</progress> <code>{status}</code></div>",
        }

    def begin(self, rounds: int, label: str = "") -> None:
        from IPython.display import display

        self.handle = None
        super().begin(rounds, label)
        self.handle = display(self.bundle(), raw=True, display_id=True)
        self.shown_at, self._shown_phase = self.clock(), self.phase

    def show(self) -> None:
        if self.handle is None:
            return
        now = self.clock()
        last = self.phase == "rounds" and self.done == self.rounds
        if self.phase != self._shown_phase or last or now - self.shown_at >= self.every_seconds:
            self.handle.update(self.bundle(), raw=True)
            self.shown_at, self._shown_phase = now, self.phase


def progress_display(mode: str = "auto", console: Any = None) -> ProgressDisplay | None:
    """The display for ``mode``: 'bar', 'lines', 'off' (None), or 'auto' (the bar on a
    terminal, lines elsewhere). In Jupyter (``console.is_jupyter``, detected by rich)
    'auto' and 'bar' are the notebook's bar."""
    if mode not in MODES:
        raise ConfigError(f"{arg('progress')}: expected one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return None
    if mode in ("auto", "bar"):
        from rich.console import Console

        console = console or Console(stderr=True)
        if console.is_jupyter:
            return NotebookProgress()
    if mode == "auto":
        mode = "bar" if console.is_terminal else "lines"
    return BarProgress(console) if mode == "bar" else LineProgress()


def resolve_progress(
    progress: bool | str | Callback | ProgressCallback | None,
) -> Callback | None:
    """The callback for a ``progress`` argument of run, resume, compare or sweep."""
    if progress is None or progress is False:
        return None
    if progress is True:
        return progress_display("auto")
    if isinstance(progress, str):
        return progress_display(progress)
    if isinstance(progress, Callback):  # a ProgressDisplay, or any callback
        return progress
    if callable(progress):
        return Progress(progress)
    raise ConfigError(
        f"{arg('progress')}: expected True, False, one of {', '.join(MODES)}, a "
        f"ProgressDisplay or a function (rounds_done, row); got {progress!r}"
    )
