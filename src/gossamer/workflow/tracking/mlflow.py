"""MLflow: the config as parameters, every evaluation as metrics, the totals at the end.

``logging: {mlflow: {enabled: true, tracking_uri: ..., experiment: ...}}``. Talks to
the tracking store through ``MlflowClient`` (no global active run, so the runs of a
comparison never mix). A resumed run logs into the MLflow run its first process
opened (its id is kept in ``<run dir>/tracking.json``). Needs ``mlflow`` or
``mlflow-skinny``; MLflow 3.7 and later use a ``file:`` store only with
``MLFLOW_ALLOW_FILE_STORE=true`` in the environment.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gossamer._version import __version__
from gossamer.config import ConfigError, MlflowConfig
from gossamer.results import Result
from gossamer.sim import Simulation
from gossamer.workflow.callbacks import Callback
from gossamer.workflow.tracking.common import (
    final_numbers,
    flat_params,
    numbers,
    remember_id,
    remembered_id,
    run_name,
)


class MlflowTracker(Callback):
    """One MLflow run per gossamer run; status FINISHED, KILLED (Ctrl-C, resumable) or
    FAILED (an error ended the loop)."""

    def __init__(self, settings: MlflowConfig, run_dir: Path | None):
        from mlflow.tracking import MlflowClient

        self.settings, self.run_dir = settings, run_dir
        self.client = MlflowClient(settings.tracking_uri)
        self.run_id: str | None = None

    def on_start(self, sim: Simulation) -> None:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        try:
            previous = remembered_id(self.run_dir, "mlflow") if sim.next_round > 0 else None
            if previous is not None:
                self.client.update_run(previous, status="RUNNING")
                self.run_id = previous
                return
            name = self.settings.experiment
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = (
                experiment.experiment_id if experiment else self.client.create_experiment(name)
            )
            tags = {"gossamer.version": __version__, "protocol": sim.config.protocol.name}
            if self.run_dir is not None:
                tags["gossamer.run_dir"] = str(self.run_dir.absolute())
            run = self.client.create_run(
                experiment_id,
                run_name=run_name(self.settings.run_name, self.run_dir, sim.config),
                tags={**tags, **self.settings.tags},
            )
            self.run_id = run.info.run_id
            params = [Param(k, v) for k, v in flat_params(sim.config).items()]
            self.client.log_batch(self.run_id, params=params)
        except MlflowException as error:
            raise ConfigError(f"logging.mlflow: MLflow refused the run: {error}") from None
        remember_id(self.run_dir, "mlflow", self.run_id)

    def _log(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def on_round(self, sim: Simulation, row: dict[str, Any] | None) -> None:
        if row is not None:
            self._log(numbers(row), int(row["round"]))

    def on_stop(self, sim: Simulation) -> None:
        self._end("KILLED")

    def on_finish(self, sim: Simulation, result: Result) -> None:
        self._log(final_numbers(result), sim.config.rounds)
        self._end("FINISHED")

    def close(self) -> None:
        self._end("FAILED")

    def _end(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status=status)
            self.run_id = None
