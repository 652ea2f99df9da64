"""Experiment tracking with MLflow (a local file store) and W&B (offline), read back."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

import gossamer
from conftest import small_config, stop_at
from gossamer.config import ConfigError, load_config


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_missing_package_is_a_config_error_before_any_work(tmp_path, monkeypatch, tracker):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name, *a)
    )
    config = small_config(**{f"logging.{tracker}": "true"})
    with pytest.raises(ConfigError, match=f"logging.{tracker}: needs the {tracker} package"):
        gossamer.run(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=f"logging.{tracker}"):
        gossamer.compare(config.model_dump(mode="json"), protocols=["dpsgd"], out=tmp_path / "c")


def test_true_is_short_for_enabled():
    config = load_config(None, ["logging.mlflow=true", "logging.wandb.mode=offline"])
    assert config.logging.mlflow.enabled and config.logging.mlflow.experiment == "gossamer"
    assert not config.logging.wandb.enabled and config.logging.wandb.mode == "offline"


# ------------------------------------------------------------------ MLflow


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow >= 3.7 asks for it
    return (tmp_path / "mlruns").as_uri()


def _mlflow_run(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_logs_params_every_evaluation_and_the_totals(tmp_path, mlflow_store):
    overrides = {
        "logging.mlflow.enabled": "true",
        "logging.mlflow.tracking_uri": mlflow_store,
        "logging.mlflow.experiment": "tiny",
        "logging.mlflow.tags": "{team: fleet}",
    }
    result = gossamer.run(small_config(**overrides), out=tmp_path / "run")
    client, run = _mlflow_run(mlflow_store, "tiny")
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    params = run.data.params
    assert params["nodes"] == "6" and params["protocol.name"] == "dpsgd"
    assert params["model.hidden"] == "[7]" and params["data.synthetic.shape"] == "[12]"
    assert run.data.tags["team"] == "fleet" and run.data.tags["protocol"] == "dpsgd"
    history = client.get_metric_history(run.info.run_id, "test_accuracy_mean")
    assert [(m.step, m.value) for m in history] == [
        (int(r), a)
        for r, a in zip(result.metrics["round"], result.metrics["test_accuracy_mean"], strict=True)
    ]
    assert run.data.metrics["totals.bytes_sent"] == result.totals["bytes_sent"]
    assert run.data.metrics["totals.messages"] == 4 * 6 * 2  # ring of 6, 4 rounds


@pytest.mark.parametrize("initial", [True, False])
def test_mlflow_a_resumed_run_logs_into_the_same_run(tmp_path, mlflow_store, initial):
    """Also when the run was stopped before its first evaluation (no initial one)."""
    overrides = {"logging.mlflow": f"{{enabled: true, tracking_uri: '{mlflow_store}'}}"}
    overrides["eval.initial"] = str(initial).lower()
    config = small_config(rounds=8, eval_every=4, **overrides)

    with pytest.raises(gossamer.RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(3))
    _, stopped = _mlflow_run(mlflow_store, "gossamer")
    assert stopped.info.status == "KILLED"
    result = gossamer.resume(tmp_path / "cut")
    client, run = _mlflow_run(mlflow_store, "gossamer")  # still one run
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "test_accuracy_mean")]
    assert steps == ([0] if initial else []) + [4, 8] == list(result.metrics["round"])


# ------------------------------------------------------------------ Weights & Biases


def _wandb_records(run_dir: Path) -> list:
    """Every record of the offline run's transaction log (``run-<id>.wandb``): a
    LevelDB-style log of 32 KiB blocks of chunks (crc32, length, type) after a 7-byte
    header, each record a protobuf ``Record`` (read here independently of wandb)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, position, pending = [], 7, b""
    while position + 7 <= len(data):
        left = 32768 - position % 32768
        if left < 7:  # the block's tail is padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_logs_the_config_every_evaluation_and_the_totals(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # `dir` wins: the run dir
    config = small_config(**{"logging.wandb": "{enabled: true, project: tiny, tags: [a]}"})
    result = gossamer.run(config, out=tmp_path / "run")
    wandb.teardown()  # the wandb service writes the log's tail when it shuts down
    records = _wandb_records(tmp_path / "run")
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "tiny" and run.display_name == "run" and list(run.tags) == ["a"]
    logged = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert logged["nodes"] == 6 and logged["protocol"]["name"] == "dpsgd"
    assert logged["model"]["hidden"] == [7]
    rows = [
        {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    assert [(row["_step"], row["test_accuracy_mean"]) for row in rows] == [
        (int(r), a)
        for r, a in zip(result.metrics["round"], result.metrics["test_accuracy_mean"], strict=True)
    ]
    summary = {}
    for record in records:
        if record.WhichOneof("record_type") == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in record.summary.update})
    assert summary["totals.bytes_sent"] == result.totals["bytes_sent"]
    assert (tmp_path / "run" / "tracking.json").is_file()
    assert not (tmp_path / "elsewhere").exists()
