"""Optional experiment tracking: TensorBoard, MLflow and Weights & Biases.

The ``logging`` config section (``gossamer.config.tracking``) turns each on. Every
tracker is a callback of the round loop (``gossamer.workflow.callbacks.Callback``)
that logs each evaluation's metrics row, step = the round; MLflow and W&B also log
the resolved config as parameters and the run's totals at the end. Their packages
are optional: asking for one that is not installed is a ConfigError before any work.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gossamer.config import Config, ConfigError, arg
from gossamer.workflow.callbacks import Callback
from gossamer.workflow.tracking.mlflow import MlflowTracker
from gossamer.workflow.tracking.tensorboard import TensorBoard, TensorBoardLogger
from gossamer.workflow.tracking.wandb import WandbTracker

#: config key -> (package to find, pip install hint)
PACKAGES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "mlflow": ("mlflow", "'gossamer[mlflow]' (or mlflow-skinny)"),
    "wandb": ("wandb", "'gossamer[wandb]'"),
}


def _wanted(config: Config) -> list[str]:
    logging = config.logging
    flags = {
        "tensorboard": logging.tensorboard,
        "mlflow": logging.mlflow.enabled,
        "wandb": logging.wandb.enabled,
    }
    return [key for key, on in flags.items() if on]


def check_tracking(config: Config, run_dir: Path | None) -> None:
    """Raise ConfigError now if the configured tracking cannot work."""
    for key in _wanted(config):
        package, hint = PACKAGES[key]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logging.{key}: needs the {package} package (pip install {hint}); "
                f"got logging.{key} on"
            )
    if config.logging.tensorboard and run_dir is None:
        raise ConfigError(f"logging.tensorboard: needs a run directory ({arg('out')}) to log into")


def open_trackers(config: Config, run_dir: Path | None, start_round: int = 0) -> list[Callback]:
    """The tracking callbacks of a run that starts (or resumes) at ``start_round``."""
    check_tracking(config, run_dir)
    wanted = _wanted(config)
    trackers: list[Callback] = []
    if "tensorboard" in wanted:
        # Rows up to start_round are logged already; later ones are logged again.
        purge = start_round + 1 if start_round else None
        trackers.append(TensorBoard(TensorBoardLogger(run_dir / "tensorboard", purge)))
    if "mlflow" in wanted:
        trackers.append(MlflowTracker(config.logging.mlflow, run_dir))
    if "wandb" in wanted:
        trackers.append(WandbTracker(config.logging.wandb, run_dir))
    return trackers


__all__ = [
    "MlflowTracker",
    "TensorBoard",
    "TensorBoardLogger",
    "WandbTracker",
    "check_tracking",
    "open_trackers",
]
