"""Optional experiment tracking: TensorBoard scalars of every evaluation.

``logging: {tensorboard: true}`` writes every metrics row's numbers as scalars to
``<run dir>/tensorboard`` (view with ``tensorboard --logdir runs``). It needs the
``tensorboard`` package, which gossamer does not depend on; asking for it without
the package is a configuration error reported before any work.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

from gossamer.config import Config, ConfigError, arg


def check_tracking(config: Config, run_dir: Path | None) -> None:
    """Raise ConfigError now if the configured tracking cannot work."""
    if not config.logging.tensorboard:
        return
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "logging.tensorboard: needs the tensorboard package (pip install tensorboard); "
            "got tensorboard: true"
        )
    if run_dir is None:
        raise ConfigError(f"logging.tensorboard: needs a run directory ({arg('out')}) to log into")


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


def open_logger(
    config: Config, run_dir: Path | None, start_round: int = 0
) -> TensorBoardLogger | None:
    if not config.logging.tensorboard:
        return None
    check_tracking(config, run_dir)
    # Rows up to start_round are logged already; later ones are logged again.
    return TensorBoardLogger(run_dir / "tensorboard", start_round + 1 if start_round else None)
