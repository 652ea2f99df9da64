"""Runs of a comparison or a sweep: checked before the first starts, continued when rerun.

A comparison or sweep writes one run directory per run. Rerunning it into the same
directory keeps the runs that finished with the same config, resumes the one that was
stopped from its checkpoint, and runs the others; ``force`` starts every run over.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gossamer.config import Config, ConfigError, RunDirectoryError, arg, config_hash, load_config
from gossamer.results import CHECKPOINT, FINISH_MARKS, Result, directory_kind, load_run
from gossamer.workflow.callbacks import Callback
from gossamer.workflow.lock import RunDirectoryInUseError, RunLock
from gossamer.workflow.loop import ProgressArg, RunInterrupted, resume, run
from gossamer.workflow.progress import ProgressDisplay, resolve_progress
from gossamer.workflow.tracking import check_tracking


def prepare_runs(out: Path, kind: str, planned: Sequence[tuple[Path, Config]], force: bool) -> None:
    """Before the first run of a comparison or sweep (``kind``) into ``out``.

    Refuses a finished one (its ``<kind>.json`` mark exists) unless ``force``, which
    removes the mark first, so that a forced rerun stopped half-way is an unfinished
    one that a rerun without ``force`` continues. Refuses, unless ``force``, to
    overwrite a run directory that holds the results of another config, and any run
    directory that another process is writing (its lock is held).
    """
    marker = out / FINISH_MARKS[kind]
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"{arg('out')}: '{out}' exists and is not a directory")
    found = directory_kind(out)
    if found not in (None, kind):
        raise RunDirectoryError(
            f"{arg('out')}: '{out}' holds a {found}, not a {kind}; choose another directory"
        )
    if marker.exists() and not force:
        raise RunDirectoryError(
            f"{arg('out')}: '{out}' holds a finished {kind} ({marker.name} exists); "
            f"choose another directory or pass {arg('force')}"
        )
    for run_dir, config in planned:  # what would stop a run at its start, checked now
        RunLock(run_dir, arg("out")).clear_stale()  # in use by another process: refused
        check_tracking(config, run_dir)
        if run_dir.exists() and (not run_dir.is_dir() or _foreign(run_dir)):
            raise RunDirectoryError(
                f"{arg('out')}: '{run_dir}' exists and holds no run (no config.yaml); "
                "move it away or choose another directory"
            )
        has_results = (run_dir / "summary.json").exists() or (run_dir / CHECKPOINT).exists()
        if has_results and not force and not _same_config(run_dir, config):
            raise RunDirectoryError(
                f"{arg('out')}: '{run_dir}' holds the results of another config; pass "
                f"{arg('force')} to overwrite them, or choose another directory"
            )
    marker.unlink(missing_ok=True)
    if force:  # every run starts over, even if this pass is stopped before reaching it
        for run_dir, _ in planned:
            (run_dir / "summary.json").unlink(missing_ok=True)
            (run_dir / CHECKPOINT).unlink(missing_ok=True)


def _foreign(folder: Path) -> bool:
    """A non-empty folder that is not a run directory."""
    return any(folder.iterdir()) and not (folder / "config.yaml").exists()


def _same_config(run_dir: Path, config: Config) -> bool:
    try:
        written = load_config(run_dir / "config.yaml")
    except ConfigError:
        return False
    return config_hash(written) == config_hash(config)


def run_or_continue(
    config: Config,
    run_dir: Path | None,
    force: bool,
    progress: ProgressArg | Callback,
    callbacks: Sequence[Callback] = (),
) -> Result:
    """One run of a comparison or sweep: when ``run_dir`` already holds this very config
    (same resolved config hash) and ``force`` is off, a finished run is loaded and an
    interrupted one resumed from its checkpoint; otherwise it runs afresh."""
    if run_dir is not None and not force and _same_config(run_dir, config):
        if (run_dir / "summary.json").is_file():
            return load_run(run_dir)
        result = None
        if (run_dir / CHECKPOINT).is_file():
            try:  # resume checks the checkpoint before any work
                result = resume(run_dir, progress=progress, callbacks=callbacks)
            except RunDirectoryInUseError:
                raise
            except ConfigError as error:  # unreadable, or another version's: redo this run
                warnings.warn(f"{error}; running it again", stacklevel=2)
        if result is None:
            result = run(config, out=run_dir, force=True, progress=progress, callbacks=callbacks)
    else:
        result = run(config, out=run_dir, force=True, progress=progress, callbacks=callbacks)
    if result.stop_requested:  # Ctrl-C in the last round: this run is done, stop here
        raise RunInterrupted(run_dir, config.rounds)
    return result


def run_progress(progress: Any, count: int) -> Callable[[int, str], Any]:
    """``progress`` of a comparison or sweep of ``count`` runs as a function of the run's
    index and name: True, a mode or a ProgressDisplay is one display that follows
    every run, labelled ``variant k/n name``; a function ``progress(*key)`` (the older
    form) returns each run's progress itself (``key``: what the caller passes)."""
    if callable(progress) and not isinstance(progress, Callback):
        return lambda index, name, *key: progress(*key)
    display = resolve_progress(progress)

    def labelled(index: int, name: str, *key) -> Any:
        if isinstance(display, ProgressDisplay):
            display.label = f"variant {index + 1}/{count} {name}"
        return display

    return labelled
