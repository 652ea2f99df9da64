"""The ``logging`` section: where a run's metrics are also tracked (all off by default).

``tensorboard`` writes event files into the run directory; ``mlflow`` and ``wandb``
log the config as parameters and every evaluation as metrics to an MLflow tracking
store or a Weights & Biases project (``gossamer.workflow.tracking``). Each needs its
package, which gossamer does not install (``pip install 'gossamer[mlflow]'``,
``'gossamer[wandb]'``); asking for one without it is a ConfigError before any work.
``mlflow: true`` and ``wandb: true`` are short for ``{enabled: true}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gossamer.config.registry import Section


class _Switchable(Section):
    """A tracker that is off unless ``enabled``; ``true``/``false`` stand for it."""

    enabled: bool = Field(False, description="log this run")


def _switch(value: Any) -> Any:
    return {"enabled": value} if isinstance(value, bool) else value


class MlflowConfig(_Switchable):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default: MLflow's, from MLFLOW_TRACKING_URI)"
    )
    experiment: str = Field("gossamer", min_length=1, description="experiment name")
    run_name: str | None = Field(None, description="default: the run directory's name")
    tags: dict[str, str] = Field(default_factory=dict, description="extra run tags")


class WandbConfig(_Switchable):
    project: str = Field("gossamer", min_length=1)
    entity: str | None = Field(None, description="team or user (default: wandb's)")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="default: wandb's (WANDB_MODE, else online)"
    )
    dir: str | None = Field(None, description="where wandb writes (default: the run directory)")
    name: str | None = Field(None, description="run name (default: the run directory's name)")
    tags: list[str] = Field(default_factory=list)


class LoggingConfig(Section):
    tensorboard: bool = Field(False, description="TensorBoard scalars in <run>/tensorboard")
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    wandb: WandbConfig = Field(default_factory=WandbConfig)

    _mlflow = field_validator("mlflow", mode="before")(lambda cls, value: _switch(value))
    _wandb = field_validator("wandb", mode="before")(lambda cls, value: _switch(value))
