"""The round loop: run or resume one experiment, with callbacks for everything around it.

``run`` builds a simulation and a run directory; ``resume`` rebuilds one from its
directory and checkpoint. Both hand over to :func:`execute`, a short loop over rounds
that tells its callbacks (``gossamer.workflow.callbacks``) what happened.

Both hold the run directory's lock (:mod:`gossamer.workflow.lock`) from before they
judge it until their last file is written: one process writes a directory at a time.

A first Ctrl-C (SIGINT) lets the current round finish, saves a checkpoint (and the
partial report, if asked for) and raises :class:`RunInterrupted`; a second one stops at
once.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist

from gossamer._version import __version__
from gossamer.config import (
    CheckpointError,
    Config,
    ConfigError,
    RunDirectoryError,
    arg,
    load_config,
)
from gossamer.results import CHECKPOINT, Result, RunWriter, rows_to_columns
from gossamer.sim import Simulation
from gossamer.sim.shard import Shard
from gossamer.workflow import checkpoint, distributed
from gossamer.workflow.callbacks import Callback, Checkpointer, ProgressCallback, Report, RunFiles
from gossamer.workflow.integrity import check_state
from gossamer.workflow.lock import RunLock
from gossamer.workflow.progress import ProgressDisplay, resolve_progress
from gossamer.workflow.tracking import check_tracking, open_trackers

#: What ``progress`` may be: True (a bar on a terminal or in Jupyter, else plain
#: lines), 'auto', 'bar', 'lines', 'off', a ProgressDisplay, or a function
#: ``progress(rounds_done, metrics_row_or_None)``.
ProgressArg = bool | str | ProgressDisplay | ProgressCallback | None


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after a whole round; its directory can be resumed."""

    def __init__(self, run_dir: Path | None, rounds_done: int):
        super().__init__(f"interrupted after round {rounds_done}")
        self.run_dir, self.rounds_done = run_dir, rounds_done


def _rank() -> int:
    """This process's rank: in a process group it has joined already, else torchrun's."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return distributed.rank()


def check_report(report: bool, out: str | Path | None) -> None:
    """Before a run, comparison or sweep: its report is written into its directory,
    so ``report=True`` needs ``out`` (the command line always has one)."""
    if report and out is None:
        raise ConfigError(
            f"report=True needs {arg('out')}, the directory to write report.html and "
            "report.md into (e.g. out='runs/my-comparison'); got out=None"
        )


def run(
    config: Config | dict | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    force: bool = False,
    progress: ProgressArg = None,
    report: bool = False,
    ranks: int = 1,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """Run one experiment and return its metrics.

    Args:
        config: a Config, a mapping, a YAML/TOML path, or None for the quickstart.
        overrides: ``"a.b=value"`` strings (``--set`` on the command line).
        out: run directory to write (config, metrics, rounds, nodes, labels, topology,
            summary, checkpoints); nothing is written when None.
        force: overwrite a finished run directory.
        progress: True shows progress: a live bar on a terminal or in Jupyter, plain
            lines elsewhere ('bar' or 'lines' to choose; ``gossamer.workflow.progress``);
            a function is called as ``progress(rounds_done, metrics_row_or_None)``
            each round.
        report: also write the HTML/Markdown report into ``out``.
        ranks: shard the nodes over this many worker processes started here
            (``gossamer.workflow.distributed``); the numbers are those of one process.
            Under ``torchrun`` each rank calls ``run`` and this stays 1.
        callbacks: :class:`gossamer.Callback` objects told of every step of the run
            (experiment tracking, early looks at metrics); only with ``ranks=1``.

    A first Ctrl-C (SIGINT) stops after the current round with a checkpoint and raises
    :class:`RunInterrupted`; ``resume(out)`` continues. A second Ctrl-C stops at once.
    """
    check_report(report, out)
    config = load_config(config, overrides)
    mine = out is not None and _rank() == 0  # the one process that locks it
    if mine:
        RunLock(Path(out), arg("out")).clear_stale()  # before its files are judged
    writer = None
    if out is not None:  # checked before work, by the process that locks it
        writer = RunWriter(Path(out), force=force) if mine else _CheckedWriter(Path(out))
    check_tracking(config, writer.path if writer is not None else None)
    callbacks = check_callbacks(callbacks, ranks)
    if ranks != 1:
        distributed.check_ranks(ranks, config.nodes)
        distributed.check_devices(ranks, config)
    with RunLock(Path(out), arg("out")) if mine else contextlib.nullcontext():
        if ranks != 1:  # the workers write under this process's lock
            resolved = config.model_dump(mode="json")  # validated again by each worker
            return distributed.launch(ranks, _run_rank, resolved, out, force, report)
        return _run(config, writer, out, progress, report, callbacks)


def _run(config, writer, out, progress, report, callbacks) -> Result:
    """The checked run on this process (and its rank's part of a multi-rank run)."""
    display = begin_progress(progress, config.rounds)
    try:
        with distributed.process_group(config):
            world, sim = _build(config)
            if world.rank != 0:  # rank 0 writes the directory; the others only checkpoints
                writer, display, callbacks = None, None, []
            if writer is not None:
                begin = writer.begin
                distributed.agree(
                    world, lambda: begin(config, sim.node_data.label_counts, sim.topology)
                )
            else:
                distributed.agree(world, lambda: None)  # rank 0's begin, agreed
            run_dir = Path(out) if out else None
            return execute(sim, writer, display, report, run_dir=run_dir, callbacks=callbacks)
    finally:
        if display is not None:
            display.close()  # also when the set-up failed


def check_callbacks(callbacks: Sequence[Callback], ranks: int) -> list[Callback]:
    """The ``callbacks`` argument as a list, checked before any work."""
    callbacks = list(callbacks)
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise ConfigError(
                f"{arg('callbacks')}: expected gossamer.Callback instances; "
                f"got {type(callback).__name__} {callback!r}"
            )
    if callbacks and ranks != 1:
        raise ConfigError(
            f"{arg('callbacks')}: callbacks run in this process, but with ranks={ranks} the "
            "rounds run in worker processes; launch with torchrun instead (rank 0's "
            "callbacks are told), or use ranks=1"
        )
    return callbacks


def _build(config: Config) -> tuple[Shard, Simulation]:
    """This rank's place among the ranks (which must all run ``config``) and its part of
    the simulation, built once every rank has built its own (inside the process group)."""
    world = distributed.world(config)
    distributed.check_same_config(world, config)
    return world, distributed.agree(world, lambda: Simulation.build(config))


def begin_progress(progress: ProgressArg, rounds: int) -> Callback | None:
    """The progress callback of a run about to be set up (a display starts showing it);
    None on ranks other than 0 (under torchrun only rank 0 shows progress)."""
    display = resolve_progress(progress)
    if distributed.rank() != 0:
        return None
    if isinstance(display, ProgressDisplay) and not display.active:
        display.begin(rounds, display.label)
    return display


def _run_rank(config: dict, out, force: bool, report: bool) -> Result | None:
    """One worker of ``run(..., ranks=R)`` (its parent holds the lock): rank 0 returns
    the result."""
    config = load_config(config)
    writer = _CheckedWriter(Path(out)) if out is not None else None
    result = _run(config, writer, out, None, report, [])
    return result if distributed.rank() == 0 else None


class _CheckedWriter(RunWriter):
    """The writer of a directory checked by the process that holds its lock (the parent
    of ``ranks=R`` workers, or rank 0): checked again, its lock file could make a new
    directory look like one that holds no run."""

    def __init__(self, path: Path):
        self.path = path


def _resume_rank(run_dir: Path, report: bool) -> Result | None:
    """One worker of ``resume(..., ranks=R)`` (its parent holds the lock)."""
    config = resume_config(run_dir)
    checked = checkpoint.check(run_dir / CHECKPOINT, config)
    result = _resume(run_dir, config, RunWriter(run_dir, resume=True), checked, None, report, [])
    return result if distributed.rank() == 0 else None


def resume(
    run_dir: str | Path,
    *,
    progress: ProgressArg = None,
    report: bool = False,
    ranks: int = 1,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """Continue an interrupted run from its last checkpoint, in the same directory,
    on any number of ranks (``ranks``, or torchrun's).

    The finished run's metrics equal those of an uninterrupted run: every random draw
    is a hash of the seed and counters, and the checkpoint holds the whole run state.
    ``progress``, ``report``, ``ranks`` and ``callbacks`` are those of :func:`run`.
    """
    run_dir = Path(run_dir)
    config = resume_config(run_dir)
    mine = _rank() == 0  # the one process that locks it
    with RunLock(run_dir, "resume") if mine else contextlib.nullcontext():
        writer = RunWriter(run_dir, resume=True)
        checked = checkpoint.check(run_dir / CHECKPOINT, config)  # before any work
        callbacks = check_callbacks(callbacks, ranks)
        if ranks != 1:
            distributed.check_ranks(ranks, config.nodes)
            distributed.check_devices(ranks, config)
            return distributed.launch(ranks, _resume_rank, run_dir, report)
        return _resume(run_dir, config, writer, checked, progress, report, callbacks)


def _resume(run_dir, config, writer, checked, progress, report, callbacks) -> Result:
    """The checked resume on this process (and its rank's part of a multi-rank one)."""
    display = begin_progress(progress, config.rounds)
    try:
        with distributed.process_group(config):
            world, sim = _build(config)
            elapsed = distributed.agree(world, lambda: _restore(sim, run_dir, checked))
            if world.rank != 0:
                writer, display, callbacks = None, None, []
            return execute(
                sim, writer, display, report, elapsed, run_dir=run_dir, callbacks=callbacks
            )
    finally:
        if display is not None:
            display.close()


def _restore(sim: Simulation, run_dir: Path, checked: dict) -> float:
    """Load this rank's part of the checkpoint (``checked``: its metadata) into ``sim``,
    its tensors checked against the run's own; the seconds it had run."""
    path = run_dir / CHECKPOINT
    state, _ = checkpoint.load(path, sim.config, sim.row_ranges(), checked)
    # what the run holds from the start, before loading (which would convert dtypes or
    # broadcast shapes); after loading, all of it (some parts are made when first used)
    check_state(path, state, {"simulation": sim.state_dict()}, strict=False)
    try:
        sim.load_state_dict(state["simulation"])
        elapsed = float(state["elapsed"])
    except (KeyError, ValueError, TypeError, RuntimeError) as error:  # saved by other code
        raise CheckpointError(
            f"resume: '{path}' does not hold this run's state: {type(error).__name__}: {error}"
        ) from None
    check_state(path, state, {"simulation": sim.state_dict()})
    if sim.next_round != checked["next_round"] or not 0 <= elapsed < math.inf:
        raise CheckpointError(
            f"resume: '{path}' is not a readable checkpoint: its state is at round "
            f"{sim.next_round} after {elapsed} s; its header says round {checked['next_round']}"
        )
    return elapsed


def resume_config(run_dir: str | Path) -> Config:
    """The config of a run directory to resume (RunDirectoryError if it holds no run or
    a finished one: refused before any rank starts; checked again under the lock)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirectoryError(f"resume: '{run_dir}' is not a run directory (no config.yaml)")
    RunWriter(run_dir, resume=True)  # refuses a finished run: nothing to resume
    return load_config(run_dir / "config.yaml")


def checkpoint_interval(config: Config) -> int:
    """Rounds between checkpoints: ``checkpoint_every``, 'auto' = a tenth of the run."""
    if config.checkpoint_every == "auto":
        return max(1, config.rounds // 10)
    return config.checkpoint_every


def callbacks_for(
    sim: Simulation,
    writer: RunWriter | None,
    progress: Callback | None,
    report: bool,
    run_dir: Path | None = None,
    extra: Sequence[Callback] = (),
) -> list[Callback]:
    """The callbacks of a run: its files, tracking, checkpoints, the user's ``extra``
    callbacks, progress and report.

    On several ranks only rank 0 has a ``writer``; every rank checkpoints its rows
    into ``run_dir``."""
    callbacks: list[Callback] = []
    if writer is not None:
        callbacks.append(RunFiles(writer))
    if sim.population.shard.rank == 0:  # one tracker run, not one per rank
        callbacks += open_trackers(sim.config, writer.path if writer else None, sim.next_round)
    if run_dir is not None:
        callbacks.append(Checkpointer(run_dir))  # after the files it must agree with
    callbacks += extra
    if progress is not None:
        callbacks.append(progress)
    if writer is not None:
        callbacks.append(Report(writer.path, report))
    return callbacks


def execute(
    sim: Simulation,
    writer: RunWriter | None,
    progress: ProgressArg | Callback = None,
    report: bool = False,
    elapsed: float = 0.0,
    run_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """The round loop, from wherever ``sim`` stands (``elapsed``: seconds spent before).

    ``run_dir``: where checkpoints go (default: the writer's directory; on several
    ranks every rank passes it, and only rank 0 a writer). ``callbacks``: the user's."""
    config = sim.config
    start = time.perf_counter() - elapsed
    run_dir = run_dir or (writer.path if writer is not None else None)
    every = checkpoint_interval(config) if run_dir is not None else 0
    shard = sim.population.shard
    shown = resolve_progress(progress)
    extra = list(callbacks)
    callbacks = distributed.agree(
        shard, lambda: callbacks_for(sim, writer, shown, report, run_dir, extra)
    )

    def tell(event: str, *args) -> None:
        for callback in callbacks:
            getattr(callback, event)(sim, *args)

    stop = False
    try:
        with _graceful_interrupt() as interrupt:
            tell("on_start")
            if not sim.history and config.eval.initial:  # the initial models
                tell("on_round", sim.evaluate(time.perf_counter() - start))
            for t in range(sim.next_round, config.rounds):
                sim.step(t)
                due = sim.due_for_evaluation()
                tell("on_round", sim.evaluate(time.perf_counter() - start) if due else None)
                last = t + 1 == config.rounds
                stop = distributed.any_rank(shard, interrupt.stop)  # all ranks stop together
                if not last and (stop or (every and (t + 1) % every == 0)):
                    tell("on_save", time.perf_counter() - start)
                if stop and not last:
                    tell("on_stop")
                    raise RunInterrupted(run_dir, t + 1)
        wall = time.perf_counter() - start
        result = Result(
            config=config,
            summary=sim.summary(wall, __version__),
            metrics=rows_to_columns(sim.history),
            rounds=rows_to_columns(sim.ledger.per_round),
            nodes=sim.node_table(),
            run_dir=writer.path if writer is not None else None,
            label_counts=sim.node_data.label_counts,
            stop_requested=stop,
        )
        tell("on_finish", result)
        return result
    finally:
        for callback in callbacks:
            callback.close()


class _Interrupt:
    stop = False


@contextlib.contextmanager
def _graceful_interrupt():
    """First SIGINT: finish the current round, then stop; second SIGINT: stop now."""
    state = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state.stop:
            raise KeyboardInterrupt
        state.stop = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)
