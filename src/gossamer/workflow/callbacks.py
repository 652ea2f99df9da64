"""Callbacks of the round loop: each keeps one thing up to date as a run goes.

The loop (``gossamer.workflow.loop``) calls, in the order of its list:

- ``on_start(sim)`` before the first round of this process;
- ``on_round(sim, row)`` after every round, and after the evaluation of the initial
  models (``row`` is the metrics row when the round was evaluated, else None);
- ``on_save(sim, elapsed)`` when a checkpoint is taken: files are brought in line
  with it, the checkpoint itself is written last;
- ``on_stop(sim)`` when Ctrl-C stopped the run after a checkpoint;
- ``on_finish(sim, result)`` when the run is done;
- ``close()`` always, once, however the loop ends (the one cleanup path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gossamer.config import config_hash
from gossamer.report import write_report
from gossamer.results import CHECKPOINT, Result, RunWriter
from gossamer.sim import Simulation
from gossamer.workflow import checkpoint

ProgressCallback = Callable[[int, dict[str, Any] | None], None]


class Callback:
    """A hook of the round loop; subclass it and override the methods you need.

    Pass instances as ``callbacks=[...]`` to ``gossamer.run``, ``resume``, ``compare``
    or ``sweep`` (in a comparison or sweep the same objects see every run in turn;
    ``sim.config`` says which). Each hook receives the live
    :class:`gossamer.Simulation`: read it (``sim.config``, ``sim.next_round``,
    ``sim.history``, ``sim.ledger``), do not change it. A hook that raises stops the
    run (``close`` still runs). Your callbacks run after gossamer's own files and
    checkpoint, in the order given. Example::

        class PrintAccuracy(gossamer.Callback):
            def on_round(self, sim, row):
                if row is not None:
                    print(row["round"], row["test_accuracy_mean"])
    """

    def on_start(self, sim: Simulation) -> None:
        """Before this process's first round (after the set-up; a resumed run has
        ``sim.history`` and ``sim.next_round`` > 0)."""

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        """After every round (``sim.next_round`` rounds are done), and once after the
        initial evaluation (``sim.next_round == 0``). ``row`` is the metrics row
        (the columns of metrics.csv) when the round was evaluated, else None."""

    def on_save(self, sim: Simulation, elapsed: float) -> None:
        """A checkpoint is being taken (``elapsed``: seconds of the run so far); bring
        what you write in line with it."""

    def on_stop(self, sim: Simulation) -> None:
        """Ctrl-C stopped the run after a checkpoint; ``gossamer resume`` continues it."""

    def on_finish(self, sim: Simulation, result: Result) -> None:
        """The run is done; ``result`` is what ``gossamer.run`` returns."""

    def close(self) -> None:
        """Always called once when the loop ends, however it ends: release resources."""


class RunFiles(Callback):
    """The run directory's tables: metrics.csv after every evaluation, rounds.csv with
    every checkpoint, and the final files (summary.json last) when the run is done."""

    def __init__(self, writer: RunWriter):
        self.writer = writer

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        if row is not None:
            self.writer.write_metrics(sim.history)

    def on_save(self, sim: Simulation, elapsed: float) -> None:
        self.writer.write_rounds(sim.ledger.per_round)

    def on_finish(self, sim: Simulation, result: Result) -> None:
        self.writer.finish(result)
        checkpoint.discard(self.writer.path / CHECKPOINT)  # finished: not needed


class Checkpointer(Callback):
    """Writes the run state to ``<run>/checkpoint.safetensors`` (see workflow.checkpoint)."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / CHECKPOINT

    def on_save(self, sim: Simulation, elapsed: float) -> None:
        sim.check_finite(sim.next_round - 1, None)  # never checkpoint a diverged model
        state = {"simulation": sim.state_dict(), "elapsed": elapsed}
        header = {"config_hash": config_hash(sim.config), "next_round": sim.next_round}
        checkpoint.save(self.path, state, header, sim.population.shard)


class Progress(Callback):
    """Calls ``progress(rounds_done, row_or_None)``: after each round, and once at the
    start of a resumed run with where it stands."""

    def __init__(self, progress: ProgressCallback):
        self.progress = progress

    def on_start(self, sim: Simulation) -> None:
        if sim.history:  # resumed
            self.progress(sim.next_round, sim.history[-1])

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        self.progress(sim.next_round, row)


class Report(Callback):
    """report.html and report.md: when asked for, also for a stopped run (marked
    unfinished); a report already in the directory is always refreshed at the end, so
    it is never stale."""

    def __init__(self, run_dir: Path, wanted: bool):
        self.run_dir, self.wanted = run_dir, wanted

    def on_stop(self, sim: Simulation) -> None:
        if self.wanted:
            write_report([self.run_dir])

    def on_finish(self, sim: Simulation, result: Result) -> None:
        if self.wanted or (self.run_dir / "report.html").exists():
            write_report([self.run_dir])
