"""TensorBoard scalars of every evaluation in ``<run dir>/tensorboard``.

View them with ``tensorboard --logdir runs``; needs the ``tensorboard`` package.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from gossamer.sim import Simulation
from gossamer.workflow.callbacks import Callback


class TensorBoardLogger:
    """Scalars of every metrics row. A resumed run passes ``purge_step``, the first round
    it can log: TensorBoard then drops what an earlier process logged from that round on
    (evaluations after the last checkpoint, which the resumed run logs again)."""

    def __init__(self, log_dir: Path, purge_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["round"])
        for key, value in row.items():
            if key != "round" and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class TensorBoard(Callback):
    """Every metrics row as TensorBoard scalars; flushed before each checkpoint, so the
    logged rows never lag it."""

    def __init__(self, logger: TensorBoardLogger):
        self.logger = logger

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        if row is not None:
            self.logger.log(row)

    def on_save(self, sim: Simulation, elapsed: float) -> None:
        self.logger.flush()

    def close(self) -> None:
        self.logger.close()
