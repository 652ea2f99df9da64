"""The workflow: the run loop with callbacks, checkpoints and resume, comparisons, sweeps,
calibration and tracking."""

from gossamer.workflow.calibrate import suggest_delta
from gossamer.workflow.compare import compare, load_variants, protocol_overrides
from gossamer.workflow.loop import (
    RunInterrupted,
    checkpoint_interval,
    execute,
    resume,
    resume_config,
    run,
)
from gossamer.workflow.planning import plan_run
from gossamer.workflow.sweep import parse_grid, plan, sweep

__all__ = [
    "RunInterrupted",
    "checkpoint_interval",
    "compare",
    "execute",
    "load_variants",
    "parse_grid",
    "plan",
    "plan_run",
    "protocol_overrides",
    "resume",
    "resume_config",
    "run",
    "suggest_delta",
    "sweep",
]
