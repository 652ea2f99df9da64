"""The command line, through typer's runner."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from gossamer import __version__
from gossamer.cli import app

runner = CliRunner()
FAST = ["--set", "rounds=3", "--set", "eval_every=1", "--set", "nodes=8", "--set", "device=cpu"]


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"gossamer {__version__}"


@pytest.mark.parametrize(
    "command",
    ["run", "resume", "config", "topology", "compare", "report", "sweep", "delta", "devices"],
)
def test_every_command_help_has_an_example(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example: gossamer " in result.stdout
    assert "%%" not in result.stdout  # help text is not %-formatted: "5%%" would show as is


def test_run_writes_directory_and_prints_table(tmp_path):
    result = runner.invoke(app, ["run", *FAST, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "summary.json").exists()
    assert "test accuracy (mean over nodes)" in result.stdout


def test_run_json_prints_the_summary(tmp_path):
    result = runner.invoke(app, ["run", *FAST, "--json", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rounds"] == 3 and summary["nodes"] == 8
    assert summary["totals"]["messages"] == 3 * 8 * 4  # 4-regular, 3 rounds


def test_run_from_config_file_with_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("nodes: 8\nrounds: 2\neval_every: 1\nprotocol: {name: periodic, period: 2}\n")
    result = runner.invoke(
        app,
        ["run", str(path), "--set", "protocol.period=1", "--json", "--out", str(tmp_path / "r")],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["messages"] == 2 * 16


def test_bad_config_exits_non_zero_with_one_message_and_no_traceback(tmp_path):
    result = runner.invoke(app, ["run", "--set", "optimizer.lr=fast", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "optimizer.lr" in result.stderr and "got 'fast'" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


def test_refuses_finished_directory(tmp_path):
    out = str(tmp_path / "r")
    assert runner.invoke(app, ["run", *FAST, "-q", "--out", out]).exit_code == 0
    again = runner.invoke(app, ["run", *FAST, "-q", "--out", out])
    assert again.exit_code == 2 and "--force" in again.stderr
    assert runner.invoke(app, ["run", *FAST, "-q", "--force", "--out", out]).exit_code == 0


def test_config_command_prints_resolved_yaml():
    result = runner.invoke(app, ["config", "--set", "protocol=periodic"])
    assert result.exit_code == 0
    resolved = yaml.safe_load(result.stdout)
    assert resolved["protocol"] == {
        "name": "periodic",
        "compression": {"name": "none"},
        "aggregator": {"name": "mean"},
        "period": 10,
    }
    assert resolved["data"]["dataset"] == "digits"


def test_topology_command_reports_spectral_gap():
    result = runner.invoke(
        app, ["topology", "--set", "topology.kind=complete", "--set", "nodes=5", "--json"]
    )
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["edges"] == 10 and described["spectral_gap"] == pytest.approx(1.0)


def test_devices_command_reports_the_skiptrain_budgets():
    # per-round energy and budget of the quickstart MLP at 32 x 20 samples per round,
    # from the SkipTrain formula written out by hand
    result = runner.invoke(
        app, ["devices", "--set", "local_steps=20", "--set", "data.batch_size=32", "--json"]
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["samples_per_training_round"] == 640
    assert [d["device"] for d in listing["devices"]][-1] == "Xiaomi Poco X3"
    params = listing["parameters"]
    for device in listing["devices"]:
        per_round = 640 * 3 * device["inference_ms_mobilenet_v2"] / 1000 * params / 3_504_872
        per_round *= device["max_power_w"]
        assert device["joules_per_round"] == pytest.approx(per_round)
        assert device["budget_rounds"] == int(device["battery_wh"] * 3600 * 0.1 // per_round)


def test_the_run_table_shows_losses_and_simulated_time_under_conditions(tmp_path):
    base = ["run", "--set", "rounds=4", "--set", "eval_every=2", "--progress", "off"]
    ideal = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    lossy = runner.invoke(
        app, [*base, "--set", "network.delivery=0.8", "--out", str(tmp_path / "b")]
    )
    assert ideal.exit_code == 0 and lossy.exit_code == 0, lossy.output
    assert "messages lost" not in ideal.stdout and "simulated time" not in ideal.stdout
    assert "messages lost" in lossy.stdout and "simulated time (s)" in lossy.stdout
