"""Weights & Biases: the config, every evaluation as a step, the totals as summary.

``logging: {wandb: {enabled: true, project: ..., mode: offline}}``. Files go to
``<dir>/wandb`` (``dir``: default the run directory). A resumed run logs into the W&B
run its first process opened (id kept in ``<run dir>/tracking.json``). Needs
``wandb``; ``mode: offline`` (or ``WANDB_MODE=offline``) never touches the network,
``wandb sync`` uploads later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gossamer.config import WandbConfig
from gossamer.results import Result
from gossamer.sim import Simulation
from gossamer.workflow.callbacks import Callback
from gossamer.workflow.tracking.common import (
    final_numbers,
    numbers,
    remember_id,
    remembered_id,
    run_name,
)


class WandbTracker(Callback):
    """One W&B run per gossamer run, finished when the loop ends."""

    def __init__(self, settings: WandbConfig, run_dir: Path | None):
        self.settings, self.run_dir = settings, run_dir
        self.run: Any = None

    def on_start(self, sim: Simulation) -> None:
        import wandb

        settings = self.settings
        previous = remembered_id(self.run_dir, "wandb") if sim.next_round > 0 else None
        where = settings.dir or self.run_dir
        if where is not None:
            Path(where).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            mode=settings.mode,
            dir=str(where) if where is not None else None,
            name=run_name(settings.name, self.run_dir, sim.config),
            tags=settings.tags or None,
            config=sim.config.model_dump(mode="json"),
            id=previous,  # None: a new run
            resume="allow" if previous else None,
            settings=wandb.Settings(
                console="off", silent=True, x_disable_stats=True, disable_git=True
            ),
        )
        remember_id(self.run_dir, "wandb", self.run.id)

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        if row is not None:
            self.run.log(numbers(row), step=int(row["round"]))

    def on_stop(self, sim: Simulation) -> None:
        self.run.mark_preempting()  # resumable: not a failure
        self._end(0)

    def on_finish(self, sim: Simulation, result: Result) -> None:
        self.run.summary.update(final_numbers(result))
        self._end(0)

    def close(self) -> None:
        self._end(1)

    def _end(self, exit_code: int) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
