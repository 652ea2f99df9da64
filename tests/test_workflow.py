"""Checkpoints, resume, Ctrl-C, reports, sweeps, loading results, TensorBoard."""

from __future__ import annotations

import csv
import json
import math
import signal
import struct
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import gossamer
from conftest import small_config, stop_at
from gossamer.cli import app
from gossamer.config import ConfigError, dump_config, registered_names
from gossamer.sim import Simulation
from gossamer.workflow import RunInterrupted, checkpoint

runner = CliRunner()

# Every protocol, with the state a checkpoint must carry: momentum buffers, stream
# cursors, a drift, energy budgets and the protocols' own state.
RICH = {
    "nodes": 8,
    "rounds": 30,
    "eval_every": 3,
    "checkpoint_every": 4,
    "optimizer.momentum": 0.9,
    "data.stream": "true",
    "data.drift": "{kind: label_permutation, at_rounds: [15]}",
    "energy.battery_fraction": 4e-8,
    "energy.link": "wavelan",
}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def assert_same_run(a: Path, b: Path) -> None:
    """Every recorded number equal (as written), except the wall-clock time."""
    rows_a, rows_b = read_csv(a / "metrics.csv"), read_csv(b / "metrics.csv")
    assert len(rows_a) == len(rows_b)
    for row_a, row_b in zip(rows_a, rows_b, strict=True):
        row_a.pop("wall_seconds"), row_b.pop("wall_seconds")
        assert row_a == row_b
    for name in ("rounds.csv", "nodes.csv", "labels.csv", "topology.csv", "config.yaml"):
        assert (a / name).is_file() == (b / name).is_file(), name
        if (a / name).is_file():
            assert (a / name).read_text() == (b / name).read_text(), name
    summary_a = json.loads((a / "summary.json").read_text())
    summary_b = json.loads((b / "summary.json").read_text())
    summary_a.pop("wall_seconds"), summary_b.pop("wall_seconds")
    assert summary_a == summary_b


# ------------------------------------------------------------------ the file format


def test_safetensors_layout_by_hand(tmp_path):
    tensors = {
        "a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        "b": torch.tensor([5, -6], dtype=torch.int64),
    }
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as handle:
        checkpoint.write_safetensors(handle, tensors, {"note": "hi"})
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0
    header = json.loads(raw[8 : 8 + length])
    assert header == {
        "__metadata__": {"note": "hi"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [2], "data_offsets": [16, 32]},
    }
    body = raw[8 + length :]
    assert body == np.array([1, 2, 3, 4], "<f4").tobytes() + np.array([5, -6], "<i8").tobytes()
    back, metadata = checkpoint.read_safetensors(path)
    assert metadata == {"note": "hi"}
    assert torch.equal(back["a"], tensors["a"]) and torch.equal(back["b"], tensors["b"])


def test_safetensors_round_trip_of_every_dtype(tmp_path):
    tensors = {
        str(dtype): torch.arange(6).reshape(2, 3).to(dtype)
        for dtype in (torch.float64, torch.float16, torch.bfloat16, torch.int32, torch.uint8)
    }
    tensors["bool"] = torch.tensor([True, False, True])
    tensors["empty"] = torch.zeros(0, 4)
    path = tmp_path / "x.safetensors"
    with open(path, "wb") as handle:
        checkpoint.write_safetensors(handle, tensors)
    back, metadata = checkpoint.read_safetensors(path)
    assert metadata == {}
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype and torch.equal(back[name], tensor), name


def test_the_safetensors_package_reads_our_checkpoints(tmp_path):
    import safetensors.torch as safetensors_torch  # a dependency: never skipped

    out = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH, protocol="dynamic"), out=out, progress=stop_at(10))
    theirs = safetensors_torch.load_file(out / checkpoint.CHECKPOINT)
    ours, _ = checkpoint.read_safetensors(out / checkpoint.CHECKPOINT)
    assert theirs.keys() == ours.keys()
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)


# ------------------------------------------------------------------ checkpoints and resume


def test_checkpoint_holds_the_whole_state(tmp_path):
    config = small_config(**RICH, protocol="dynamic")
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted) as stop:
        gossamer.run(config, out=out, progress=stop_at(13))
    assert stop.value.rounds_done == 13
    tensors, metadata = checkpoint.read_safetensors(out / checkpoint.CHECKPOINT)
    meta = json.loads(metadata["gossamer"])
    assert meta["next_round"] == 13 and meta["config_hash"] == checkpoint.config_hash(config)
    records = json.loads(tensors["state.json"].numpy().tobytes())["simulation"]
    assert [row["round"] for row in records["history"]] == [0, 3, 6, 9, 12]
    # An independent replay of 13 rounds holds the same tensors.
    sim = Simulation.build(config)
    for t in range(13):
        sim.step(t)
    state, saved = sim.population.state, "simulation.population"
    for i, block in enumerate(state.params.blocks):
        assert torch.equal(tensors[f"{saved}.params.{i}"], block), i
    for i, block in enumerate(state.optimizer.momentum.blocks):
        assert torch.equal(tensors[f"{saved}.optimizer.momentum.{i}"], block), i
    assert torch.equal(tensors[f"{saved}.cursor"], state.cursor)
    assert torch.equal(tensors[f"{saved}.concept"], state.concept)
    assert torch.equal(
        tensors["simulation.protocol.reference"], sim.protocol.state_dict()["reference"]
    )
    for key, value in sim.ledger.node.items():
        assert np.array_equal(tensors[f"simulation.ledger.node.{key}"].numpy(), value), key
    assert records["ledger"]["per_round"] == sim.ledger.per_round


@pytest.mark.parametrize("protocol", registered_names("protocol"))
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, protocol):
    config = small_config(**RICH, protocol=protocol)
    gossamer.run(config, out=tmp_path / "whole")
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(17))
    assert not (tmp_path / "cut" / "summary.json").exists()
    assert (tmp_path / "cut" / checkpoint.CHECKPOINT).exists()
    resumed = gossamer.resume(tmp_path / "cut")
    assert resumed.config == config
    assert not (tmp_path / "cut" / checkpoint.CHECKPOINT).exists()  # finished: removed
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


COMPRESSED = {  # what is sent, with per-node state: residuals, warm starts, copies, bases
    "choco_top_k_ef": "{name: choco, compression: {name: top_k, ratio: 0.1, error_feedback: true}}",
    "periodic_power_ef": (
        "{name: periodic, period: 4, compression: {name: power, error_feedback: true}}"
    ),
    "dynamic_qsgd": "{name: dynamic, delta: 0.001, compression: {name: qsgd, levels: 4}}",
    "dynamic_gossip_sign": "{name: dynamic_gossip, delta: 0.001, compression: sign}",
    "dpsgd_ef21": "{name: dpsgd, compression: {name: top_k, ratio: 0.1, error_feedback: ef21}}",
    "periodic_ef21": "{name: periodic, period: 3, compression: {name: sign, error_feedback: ef21}}",
}


@pytest.mark.parametrize("protocol", list(COMPRESSED))
def test_a_compressed_run_interrupted_and_resumed_equals_uninterrupted(tmp_path, protocol):
    config = small_config(**RICH, protocol=COMPRESSED[protocol], **{"network.delivery": 0.8})
    gossamer.run(config, out=tmp_path / "whole")
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(17))
    gossamer.resume(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


def _write_config(path: Path, config) -> Path:
    path.write_text(dump_config(config))
    return path


def _start_run(config_file: Path, out: Path) -> subprocess.Popen:
    """``gossamer run CONFIG --out OUT -q`` in a subprocess."""
    return subprocess.Popen(
        [sys.executable, "-m", "gossamer", "run", str(config_file), "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    """Poll until ``path`` exists; fail if the process ends or time runs out first."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, f"no {path.name} within {seconds} s"
        time.sleep(0.002)


def test_killed_process_resumed_equals_uninterrupted(tmp_path):
    """A real ``kill -9`` of ``gossamer run`` once a checkpoint exists, then resume."""
    config = small_config(
        nodes=8, rounds=1200, eval_every=100, checkpoint_every=40, **{"optimizer.momentum": 0.5}
    )
    cut = tmp_path / "cut"
    process = _start_run(_write_config(tmp_path / "long.yaml", config), cut)
    _wait_for(cut / checkpoint.CHECKPOINT, process)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (cut / "summary.json").exists()
    killed_at = json.loads(checkpoint.read_safetensors(cut / checkpoint.CHECKPOINT)[1]["gossamer"])
    assert 0 < killed_at["next_round"] < 1200
    gossamer.resume(cut)
    gossamer.run(config, out=tmp_path / "whole")
    assert_same_run(tmp_path / "whole", cut)


def test_ctrl_c_stops_with_a_checkpoint_and_a_partial_report(tmp_path):
    config = small_config(nodes=8, rounds=20000, eval_every=50, checkpoint_every=0)
    out = tmp_path / "run"
    process = _start_run(_write_config(tmp_path / "long.yaml", config), out)
    _wait_for(out / "metrics.csv", process)  # the round loop has started
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    stderr = process.stderr.read().decode()
    assert f"with a checkpoint; continue with: gossamer resume {out}" in stderr
    assert (out / checkpoint.CHECKPOINT).exists()  # even with checkpoint_every: 0
    assert not (out / "summary.json").exists()
    assert "Unfinished run" in (out / "report.html").read_text()
    rounds_done = json.loads(
        checkpoint.read_safetensors(out / checkpoint.CHECKPOINT)[1]["gossamer"]
    )["next_round"]
    assert 0 < rounds_done < 20000
    partial = gossamer.load(out)
    assert partial.summary == {"finished": False}
    assert partial.metrics["round"][-1] <= rounds_done


def test_resume_through_the_cli_and_its_errors(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=out, progress=stop_at(5))
    done = runner.invoke(app, ["resume", str(out), "-q"])
    assert done.exit_code == 0, done.output
    assert (out / "summary.json").exists() and "Unfinished" not in (out / "report.html").read_text()
    again = runner.invoke(app, ["resume", str(out)])
    assert again.exit_code == 2 and "holds a finished run" in again.stderr
    assert "nothing to resume" in again.stderr
    ranks = runner.invoke(app, ["resume", str(out), "--ranks", "4"])  # refused before any rank
    assert ranks.exit_code == 2 and "nothing to resume" in ranks.stderr
    assert "running on 4 ranks" not in ranks.output

    stopped = tmp_path / "stopped"  # a new run would throw the checkpoint away
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=stopped, progress=stop_at(5))
    config_file = _write_config(tmp_path / "rich.yaml", small_config(**RICH))
    rerun = runner.invoke(app, ["run", str(config_file), "--out", str(stopped)])
    assert rerun.exit_code == 2 and f"continue it with gossamer resume {stopped}" in rerun.stderr
    forced = runner.invoke(app, ["run", str(config_file), "--out", str(stopped), "--force", "-q"])
    assert forced.exit_code == 0 and not (stopped / checkpoint.CHECKPOINT).exists()

    missing = runner.invoke(app, ["resume", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no config.yaml" in missing.stderr

    early = tmp_path / "early"  # stopped before its first checkpoint
    early.mkdir()
    _write_config(early / "config.yaml", small_config())
    result = runner.invoke(app, ["resume", str(early)])
    assert result.exit_code == 2 and "has no checkpoint.safetensors" in result.stderr

    changed = tmp_path / "changed"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=changed, progress=stop_at(5))
    _write_config(changed / "config.yaml", small_config(**{**RICH, "optimizer.lr": 0.5}))
    result = runner.invoke(app, ["resume", str(changed)])
    assert result.exit_code == 2 and "differs from the config" in result.stderr

    torn = tmp_path / "torn"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=torn, progress=stop_at(5))
    data = (torn / checkpoint.CHECKPOINT).read_bytes()
    (torn / checkpoint.CHECKPOINT).write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["resume", str(torn)])
    assert result.exit_code == 2 and "is not a readable checkpoint" in result.stderr
    # A well-formed file that lacks a tensor, or whose header is not an object.
    tensors, metadata = checkpoint.read_safetensors(out_of(torn, data))
    del tensors["simulation.population.cursor"]
    with open(torn / checkpoint.CHECKPOINT, "wb") as handle:
        checkpoint.write_safetensors(handle, tensors, metadata)
    result = runner.invoke(app, ["resume", str(torn)])
    missing = "not a readable checkpoint: KeyError: 'simulation.population.cursor'"
    assert result.exit_code == 2 and missing in result.stderr
    for head in (struct.pack("<Q", 8) + b"[]      ", b"\xff" * 8, struct.pack("<Q", 2**62)):
        (torn / checkpoint.CHECKPOINT).write_bytes(head)  # not an object; lengths too long
        result = runner.invoke(app, ["resume", str(torn)])
        assert result.exit_code == 2 and "is not a readable checkpoint" in result.stderr


def out_of(folder: Path, data: bytes) -> Path:
    """Write checkpoint bytes to a file beside ``folder``'s checkpoint; returns its path."""
    path = folder / "copy.safetensors"
    path.write_bytes(data)
    return path


def test_checkpoints_follow_checkpoint_every(tmp_path):
    config = small_config(rounds=10, checkpoint_every=3)
    seen = []

    def progress(done, row):
        path = tmp_path / "run" / checkpoint.CHECKPOINT
        if path.exists():
            meta = json.loads(checkpoint.read_safetensors(path)[1]["gossamer"])
            seen.append(meta["next_round"])

    gossamer.run(config, out=tmp_path / "run", progress=progress)
    assert sorted(set(seen)) == [3, 6, 9]
    assert gossamer.workflow.checkpoint_interval(small_config(rounds=95)) == 9  # auto: a tenth
    assert gossamer.workflow.checkpoint_interval(small_config(rounds=4)) == 1


def test_forced_rerun_clears_the_previous_run(tmp_path):
    out = tmp_path / "run"
    gossamer.run(small_config(), out=out, report=True)
    assert (out / "report.html").exists() and (out / "report_files").is_dir()
    gossamer.run(small_config(seed=5), out=out, force=True)
    assert not (out / "report.html").exists() and not (out / "report_files").exists()
    assert gossamer.load(out).config.seed == 5


# ------------------------------------------------------------------ reports


FULL_REPORT = [
    "Test accuracy against rounds",
    "Test accuracy against communication",
    "Test accuracy against energy",
    "Communication over time",
    "Test accuracy against simulated time",
    "Cumulative prequential loss against communication",
    "Loss around the drift",
    "Consensus distance against rounds",
    "Per-node accuracy distribution",
    "Topology",
    "Label distribution over nodes",
]


def test_run_report_is_self_contained_and_has_every_plot(tmp_path):
    out = tmp_path / "run"
    gossamer.run(small_config(**RICH), out=out, report=True)
    page = (out / "report.html").read_text()
    for caption in FULL_REPORT:
        assert f"<figcaption><strong>{caption}</strong>. " in page, caption
    assert page.count("src='data:image/png;base64,") == len(FULL_REPORT)
    # Offline: nothing to fetch (no links, scripts, stylesheets or remote images).
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert "optimizer:" in page and "momentum: 0.9" in page  # the configuration
    markdown = (out / "report.md").read_text()
    images = [line for line in markdown.splitlines() if line.startswith("![")]
    assert len(images) == len(FULL_REPORT)
    for line in images:
        assert (out / line[line.index("](") + 2 : -1]).is_file()


def test_report_leaves_out_plots_without_data(tmp_path):
    out = tmp_path / "run"
    gossamer.run(small_config(**{"energy.enabled": "false"}), out=out, report=True)
    page = (out / "report.html").read_text()
    assert "Test accuracy against rounds" in page and "Topology" in page
    for caption in ("against energy", "prequential", "around the drift"):
        assert caption not in page


def test_report_command_on_runs_and_comparisons(tmp_path):
    for seed in (1, 2):
        gossamer.run(small_config(seed=seed), out=tmp_path / f"s{seed}")
    result = runner.invoke(
        app, ["report", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Comparison of runs" in page and "<h2>s1</h2>" in page and "<h2>s2</h2>" in page
    bad = runner.invoke(app, ["report", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2 and "is not a directory" in bad.stderr
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    bad = runner.invoke(app, ["report", str(not_a_run)])
    assert bad.exit_code == 2 and "no config.yaml" in bad.stderr


def test_compare_writes_a_report_by_default(tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", *(f"-s{k}" for k in ("nodes=6", "rounds=4", "eval_every=2", "device=cpu"))]
    result = runner.invoke(app, [*args, "-p", "dpsgd", "-p", "nosync", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    assert "<h2>dpsgd</h2>" in page and "<h2>nosync</h2>" in page
    assert "<figcaption><strong>Test accuracy against communication</strong>. " in page
    skipped = tmp_path / "cmp2"
    runner.invoke(app, [*args, "-p", "dpsgd", "--out", str(skipped), "-q", "--no-report"])
    assert (skipped / "comparison.json").exists() and not (skipped / "report.html").exists()


# ------------------------------------------------------------------ loading results


def test_load_reads_runs_comparisons_and_sweeps_back(tmp_path):
    result = gossamer.run(small_config(**RICH), out=tmp_path / "run")
    back = gossamer.load(tmp_path / "run")
    assert back.config == result.config and back.summary["final"] == pytest.approx(result.final)
    for key, values in result.metrics.items():
        if key != "wall_seconds":
            np.testing.assert_allclose(back.metrics[key], values, rtol=1e-6, err_msg=key)
    for key in ("prequential_loss", "bytes_sent", "drift_nodes"):
        np.testing.assert_allclose(back.rounds[key], result.rounds[key], rtol=1e-6)
    np.testing.assert_allclose(back.nodes["test_accuracy"], result.nodes["test_accuracy"])
    assert np.array_equal(back.label_counts, result.label_counts)

    comparison = gossamer.compare(
        small_config().model_dump(mode="json"), protocols=["dpsgd", "nosync"], out=tmp_path / "c"
    )
    loaded = gossamer.load(tmp_path / "c")
    assert list(loaded.results) == ["dpsgd", "nosync"]
    np.testing.assert_allclose(
        loaded.table["test_accuracy_mean"].astype(float),
        comparison.table["test_accuracy_mean"].astype(float),
    )
    swept = gossamer.sweep(
        small_config(), grid=["optimizer.lr=0.05,0.1"], seeds=2, out=tmp_path / "s"
    )
    loaded = gossamer.load(tmp_path / "s")
    assert loaded.points == [{"optimizer.lr": 0.05}, {"optimizer.lr": 0.1}]
    np.testing.assert_allclose(
        loaded.table["test_accuracy_mean"].astype(float),
        swept.table["test_accuracy_mean"].astype(float),
    )
    with pytest.raises(ConfigError, match="holds run directories but is not a run"):
        gossamer.load(tmp_path)  # run directories below, no comparison.json or sweep.json
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a gossamer run directory"):
        gossamer.load(tmp_path / "empty")
    with pytest.raises(ConfigError, match="is not a directory"):
        gossamer.load(tmp_path / "missing")


def test_frame_needs_pandas_or_gives_dataframes(tmp_path):
    result = gossamer.run(small_config(), out=tmp_path / "run")
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pandas"):
            result.frame()
        return
    frame = result.frame()
    assert list(frame["round"]) == list(result.metrics["round"])


# ------------------------------------------------------------------ sweeps


def test_sweep_intervals_by_hand_and_reproducible(tmp_path):
    grid = ["optimizer.lr=0.05,0.2"]
    first = gossamer.sweep(small_config(), grid=grid, seeds=3, out=tmp_path / "a")
    gossamer.sweep(small_config(), grid=grid, seeds=3, out=tmp_path / "b")
    assert (tmp_path / "a" / "runs.csv").read_text() == (tmp_path / "b" / "runs.csv").read_text()
    assert (tmp_path / "a" / "sweep.csv").read_text() == (tmp_path / "b" / "sweep.csv").read_text()
    t_975_2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom
    for index, lr in enumerate((0.05, 0.2)):
        values = [
            gossamer.run(small_config(seed=3 + k, **{"optimizer.lr": lr})).final[
                "test_accuracy_mean"
            ]
            for k in range(3)
        ]
        mean = sum(values) / 3
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
        assert first.table["test_accuracy_mean"][index] == pytest.approx(mean)
        assert first.table["test_accuracy_mean_ci_low"][index] == pytest.approx(
            mean - t_975_2 * sd / math.sqrt(3)
        )
        assert first.table["test_accuracy_mean_ci_high"][index] == pytest.approx(
            mean + t_975_2 * sd / math.sqrt(3)
        )
    assert sorted(p.name for p in (tmp_path / "a" / "optimizer.lr=0.05").iterdir()) == [
        "seed-3",
        "seed-4",
        "seed-5",
    ]


def test_sweep_command_and_its_errors(tmp_path):
    out = tmp_path / "s"
    args = ["sweep", *(f"-s{k}" for k in ("nodes=6", "rounds=4", "eval_every=2", "device=cpu"))]
    result = runner.invoke(
        app, [*args, "--grid", "protocol=dpsgd,nosync", "--seeds", "2", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    # which run is which: the progress (on stderr, here plain lines) labels it
    assert "[variant 4/4 protocol=nosync, seed 1] set-up (4 rounds)" in result.stderr
    sweep_json = json.loads((out / "sweep.json").read_text())
    assert sweep_json["points"] == [{"protocol": "dpsgd"}, {"protocol": "nosync"}]
    table = read_csv(out / "sweep.csv")
    assert [row["protocol"] for row in table] == ['"dpsgd"', '"nosync"']
    assert float(table[1]["megabytes_sent"]) == 0.0  # nosync sends nothing
    assert "| protocol | seeds | test_accuracy_mean (95% CI) |" in (out / "sweep.md").read_text()
    assert (out / "sweep_test_accuracy_mean.png").is_file()
    assert "Sweep: s" in (out / "report.html").read_text()

    again = runner.invoke(app, [*args, "--grid", "protocol=dpsgd", "-o", str(out)])
    assert again.exit_code == 2 and "holds a finished sweep" in again.stderr
    bad = runner.invoke(app, [*args, "--grid", "optimizer.lr=0.1,-1", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "sweep point {'optimizer.lr': -1}" in bad.stderr
    assert not (tmp_path / "x").exists()  # validated before any run
    bad = runner.invoke(app, [*args, "--grid", "optimizer.lr", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--grid: expected key=value1,value2" in bad.stderr


def test_rerun_of_a_stopped_sweep_keeps_finished_runs_and_resumes(tmp_path):
    out = tmp_path / "s"
    config = small_config(rounds=12, checkpoint_every=2)
    grid = ["optimizer.lr=0.05,0.1"]
    calls = []

    def progress(point, seed):
        calls.append((point["optimizer.lr"], seed))
        return stop_at(5) if len(calls) == 2 else None  # Ctrl-C in the second run

    # Runs go seed by seed: (0.05, seed 3), (0.1, seed 3), (0.05, seed 4), (0.1, seed 4).

    with pytest.raises(RunInterrupted):
        gossamer.sweep(config, grid=grid, seeds=2, out=out, progress=progress)
    with pytest.raises(ConfigError, match="is not a run, a finished comparison"):
        gossamer.load(out)
    first_run = out / "optimizer.lr=0.05" / "seed-3" / "metrics.csv"
    stamp = first_run.stat().st_mtime_ns
    assert (out / "optimizer.lr=0.1" / "seed-3" / checkpoint.CHECKPOINT).exists()
    assert calls == [(0.05, 3), (0.1, 3)]
    finished = gossamer.sweep(config, grid=grid, seeds=2, out=out)
    assert first_run.stat().st_mtime_ns == stamp  # kept, not rerun
    whole = gossamer.sweep(config, grid=grid, seeds=2, out=tmp_path / "whole")
    assert (out / "runs.csv").read_text() == (tmp_path / "whole" / "runs.csv").read_text()
    assert (
        finished.table["test_accuracy_mean"].tolist() == whole.table["test_accuracy_mean"].tolist()
    )


# ------------------------------------------------------------------ sharing and tracking


def test_runs_on_the_same_data_and_graph_share_them():
    from gossamer.sim.data import dataset_key
    from gossamer.sim.simulation import SHARED_DATASETS, SHARED_TOPOLOGIES

    SHARED_DATASETS.clear()
    SHARED_TOPOLOGIES.clear()
    gossamer.run(small_config(protocol="dpsgd"))
    # Another protocol, learning rate and partition: the same data and graph.
    other = {"optimizer.lr": 0.3, "data.partition": "dirichlet", "data.alpha": 0.1}
    gossamer.run(small_config(protocol="skiptrain", **other))
    assert (SHARED_DATASETS.hits, SHARED_DATASETS.misses) == (1, 1)
    assert (SHARED_TOPOLOGIES.hits, SHARED_TOPOLOGIES.misses) == (1, 1)
    gossamer.run(small_config(seed=11))  # another seed: other synthetic data, other graph
    gossamer.run(small_config(**{"data.synthetic.samples": 240}))
    assert (SHARED_DATASETS.hits, SHARED_DATASETS.misses) == (1, 3)
    assert len(SHARED_DATASETS.values) == 2  # bounded
    # The seed matters only to data that a seed generates or splits.
    cifar = small_config(**{"data.dataset": "cifar10", "data.root": "/data"}).data
    assert dataset_key(cifar, 1) == dataset_key(cifar, 2)
    digits = small_config(**{"data.dataset": "digits"}).data
    assert dataset_key(digits, 1) != dataset_key(digits, 2)


def test_tensorboard_needs_the_package_and_a_directory(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    config = small_config(**{"logging.tensorboard": "true"})
    with pytest.raises(ConfigError, match="logging.tensorboard: needs the tensorboard package"):
        gossamer.run(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # before any work


def test_tensorboard_logs_every_evaluation(tmp_path, monkeypatch):
    import importlib.util

    logged, purges = [], []

    class SummaryWriter:
        def __init__(self, log_dir, purge_step=None):
            self.log_dir = log_dir
            purges.append(purge_step)

        def flush(self):
            pass

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def close(self):
            logged.append("closed")

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: types.SimpleNamespace() if name == "tensorboard" else real(name, *a),
    )
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    config = small_config(**{"logging.tensorboard": "true"})
    with pytest.raises(ConfigError, match="needs a run directory"):
        gossamer.run(config)
    result = gossamer.run(config, out=tmp_path / "run")
    assert logged[-1] == "closed" and purges == [None]
    accuracy = [(v, s) for tag, v, s in logged[:-1] if tag == "test_accuracy_mean"]
    assert accuracy == list(
        zip(result.metrics["test_accuracy_mean"], result.metrics["round"], strict=True)
    )
    # Stopped after round 3 (rows 0 and 2 logged), resumed: TensorBoard drops steps >= 4
    # of the first process, and the resumed one logs rounds 4 on.
    logged.clear()
    config = small_config(rounds=8, **{"logging.tensorboard": "true"})
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=tmp_path / "cut", progress=stop_at(3))
    gossamer.resume(tmp_path / "cut")
    assert purges[-2:] == [None, 4]
    steps = [e[2] for e in logged if e != "closed" and e[0] == "test_loss_mean"]
    assert steps == [0, 2, 4, 6, 8]


# ------------------------------------------------------------------ edge cases


def test_grid_over_the_seed_uses_its_values(tmp_path):
    swept = gossamer.sweep(small_config(), grid=["seed=10,20"], seeds=2, out=tmp_path / "s")
    assert sorted(swept.runs) == [(0, 10), (0, 11), (1, 20), (1, 21)]
    rows = read_csv(tmp_path / "s" / "runs.csv")
    assert [(r["seed"], r["run_seed"]) for r in rows] == [
        ("10", "10"),
        ("20", "20"),
        ("10", "11"),
        ("20", "21"),
    ]
    assert swept.runs[1, 21].config.seed == 21
    with pytest.raises(ConfigError, match="grid seed: expected integers"):
        gossamer.sweep(small_config(), grid=["seed=a,b"])
    with pytest.raises(ConfigError, match="each value once; got 0.1 twice"):
        gossamer.sweep(small_config(), grid=["optimizer.lr=0.1,0.2,0.1"])


def test_colliding_names_get_distinct_folders(tmp_path):
    variants = {"lr 0.1": ["optimizer.lr=0.1"], "lr-0.1": ["optimizer.lr=0.5"]}
    source = {**small_config().model_dump(mode="json"), "variants": variants}
    gossamer.compare(source, out=tmp_path / "c")
    loaded = gossamer.load(tmp_path / "c")
    assert loaded.results["lr 0.1"].config.optimizer.lr == 0.1
    assert loaded.results["lr-0.1"].config.optimizer.lr == 0.5
    long = ["optimizer.weight_decay=0.000000001", "data.synthetic.separation=3.0000000001"]
    long += ["data.synthetic.clusters_per_class=1", "optimizer.lr=0.05,0.5"]
    gossamer.sweep(small_config(), grid=long, out=tmp_path / "s")
    folders = sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir())
    assert len(folders) == 2 and all(len(f) == 80 + 9 for f in folders)  # cut, then a hash
    loaded = gossamer.load(tmp_path / "s")
    assert sorted(r.config.optimizer.lr for r in loaded.runs.values()) == [0.05, 0.5]


def test_a_stopped_forced_comparison_continues_without_force(tmp_path):
    source = small_config().model_dump(mode="json")
    protocols = ["dpsgd", "nosync", "skiptrain"]
    first = gossamer.compare(source, protocols=protocols, out=tmp_path / "c")
    names = []

    def progress(name):
        names.append(name)
        return stop_at(2) if name == "nosync" else None

    with pytest.raises(RunInterrupted):
        gossamer.compare(
            source, protocols=protocols, out=tmp_path / "c", force=True, progress=progress
        )
    assert not (tmp_path / "c" / "comparison.json").exists()  # unfinished now
    with pytest.raises(ConfigError, match="is not a run, a finished comparison"):
        gossamer.load(tmp_path / "c")
    again = gossamer.compare(source, protocols=protocols, out=tmp_path / "c")
    assert again.table["test_accuracy_mean"].tolist() == first.table["test_accuracy_mean"].tolist()
    # Forced with another config and stopped: the continuation runs every variant anew.
    changed = {**source, "rounds": 6}
    names.clear()
    with pytest.raises(RunInterrupted):
        gossamer.compare(
            changed, protocols=protocols, out=tmp_path / "c", force=True, progress=progress
        )
    finished = gossamer.compare(changed, protocols=protocols, out=tmp_path / "c")
    assert all(r.config.rounds == 6 for r in finished.results.values())
    assert all(r.summary["rounds"] == 6 for r in gossamer.load(tmp_path / "c").results.values())


def test_a_forced_rerun_that_fails_its_checks_keeps_the_finished_one(tmp_path, monkeypatch):
    import importlib.util

    source = small_config().model_dump(mode="json")
    gossamer.compare(source, protocols=["dpsgd"], out=tmp_path / "c")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="needs the tensorboard package"):
        gossamer.compare(
            source,
            protocols=["dpsgd"],
            overrides=["logging.tensorboard=true"],
            out=tmp_path / "c",
            force=True,
        )
    assert (tmp_path / "c" / "comparison.json").exists()
    assert (tmp_path / "c" / "dpsgd" / "summary.json").exists()


def test_ctrl_c_in_the_last_round_of_a_sweep_stops_the_sweep(tmp_path):
    calls = []

    def progress(point, seed):
        calls.append(seed)
        return stop_at(4)  # rounds=4: the last round

    with pytest.raises(RunInterrupted):
        gossamer.sweep(small_config(), seeds=3, out=tmp_path / "s", progress=progress)
    assert calls == [3]
    assert (tmp_path / "s" / "base" / "seed-3" / "summary.json").exists()  # finished


def test_comparison_and_sweep_refuse_other_results_without_force(tmp_path):
    source = small_config().model_dump(mode="json")
    gossamer.compare(source, protocols=["dpsgd"], out=tmp_path / "c")
    (tmp_path / "c" / "comparison.json").unlink()  # as if stopped
    changed = {**source, "rounds": 6}
    with pytest.raises(ConfigError, match="holds the results of another config"):
        gossamer.compare(changed, protocols=["dpsgd"], out=tmp_path / "c")
    gossamer.compare(changed, protocols=["dpsgd"], out=tmp_path / "c", force=True)
    with pytest.raises(
        ConfigError, match=r"holds a comparison \(comparison.json exists\), not a run"
    ):
        gossamer.run(small_config(), out=tmp_path / "c")
    with pytest.raises(ConfigError, match="holds a comparison, not a sweep"):
        gossamer.sweep(small_config(), out=tmp_path / "c")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is not empty and holds no run"):
        gossamer.run(small_config(), out=tmp_path / "other", force=True)


def test_reports_of_unusual_directories(tmp_path):
    # Stopped before its first checkpoint (a crash): metrics, no rounds.csv.
    crashed = tmp_path / "crashed"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=crashed, progress=stop_at(7))
    for name in ("rounds.csv", checkpoint.CHECKPOINT, "report.html"):
        (crashed / name).unlink(missing_ok=True)
    gossamer.report.write_report([crashed])
    page = (crashed / "report.html").read_text()
    assert "Unfinished run" in page and "Test accuracy against rounds" in page
    assert "Communication over time" not in page
    # Configs only, no metrics yet.
    for name in ("a", "b"):
        (tmp_path / "bare" / name).mkdir(parents=True)
        _write_config(tmp_path / "bare" / name / "config.yaml", small_config())
    gossamer.report.write_report([tmp_path / "bare" / "a", tmp_path / "bare" / "b"])
    assert "<h2>a</h2>" in (tmp_path / "bare" / "report.html").read_text()
    # Runs whose folders have the same name.
    for point in ("p", "q"):
        gossamer.run(small_config(), out=tmp_path / "sw" / point / "seed-3")
    target = gossamer.report.write_report(
        [tmp_path / "sw" / "p" / "seed-3", tmp_path / "sw" / "q" / "seed-3"], out=tmp_path / "r"
    )
    page = (target / "report.html").read_text()
    assert "<h2>p/seed-3</h2>" in page and "<h2>q/seed-3</h2>" in page
    stems = {p.name for p in (target / "report_files").iterdir()}
    assert {"p-seed-3_accuracy.png", "q-seed-3_accuracy.png"} <= stems


def test_resume_refreshes_an_existing_report(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted):
        gossamer.run(small_config(**RICH), out=out, progress=stop_at(5), report=True)
    assert "Unfinished run" in (out / "report.html").read_text()
    gossamer.resume(out)  # report=False, but the old report must not stay stale
    assert "Unfinished run" not in (out / "report.html").read_text()


def test_paths_in_a_config_are_made_absolute_so_resume_works_from_anywhere(tmp_path, monkeypatch):
    import shutil

    from conftest import ROOT

    here = tmp_path / "project"
    here.mkdir()
    shutil.copy(ROOT / "examples" / "topologies" / "256_nodes_6_regular.txt", here / "g.txt")
    monkeypatch.chdir(here)
    config = small_config(
        nodes=256,
        rounds=6,
        **{"topology.kind": "file", "topology.path": "g.txt", "data.synthetic.samples": 2000},
    )
    assert config.topology.path == here / "g.txt"
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out="run", progress=stop_at(3))
    assert f"path: {here / 'g.txt'}" in (here / "run" / "config.yaml").read_text()
    monkeypatch.chdir(tmp_path)  # elsewhere
    assert gossamer.resume(here / "run").summary["topology"]["edges"] == 256 * 6 // 2


# ------------------------------------------------------------------ one writer per run directory

HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"pid %d on the test machine" % os.getpid())
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run directory's lock (as a running gossamer does)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir / ".gossamer.lock")], stdout=subprocess.PIPE
    )
    assert process.stdout.readline() == b"locked\n"
    return process


def _in_use(run_dir: Path, holder: subprocess.Popen, what: str = "out") -> str:
    return (
        f"{what}: '{run_dir}' is in use by another gossamer process (pid {holder.pid} on the "
        "test machine), which holds .gossamer.lock; wait for it to finish or stop it, or "
        "choose another directory"
    )


def test_a_run_directory_in_use_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
    from gossamer.workflow.lock import RunDirectoryInUseError

    out = tmp_path / "run"
    config = small_config(**RICH)
    with pytest.raises(RunInterrupted):
        gossamer.run(config, out=out, progress=stop_at(5))
    holder = _hold_lock(out)
    try:
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(RunDirectoryInUseError) as raised:
            gossamer.resume(out)
        assert str(raised.value) == _in_use(out, holder, "resume")
        with pytest.raises(RunDirectoryInUseError) as raised:
            gossamer.run(config, out=out, force=True)
        assert str(raised.value) == _in_use(out, holder)
        config_file = _write_config(tmp_path / "rich.yaml", config)
        cli = runner.invoke(app, ["run", str(config_file), "--out", str(out), "--force"])
        assert cli.exit_code == 2 and _in_use(out, holder, "--out") in " ".join(cli.stderr.split())
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".gossamer.lock").exists()  # left by the killed process, unlocked
    gossamer.resume(out)  # not blocked
    assert (out / "summary.json").exists() and not (out / ".gossamer.lock").exists()


def test_a_running_gossamer_holds_its_run_directory(tmp_path):
    """A real ``gossamer run`` in another process: a second run and a resume are refused
    while it writes; once it is killed (-9), the directory resumes."""
    from gossamer.workflow.lock import RunDirectoryInUseError

    config = small_config(nodes=8, rounds=1200, eval_every=100, checkpoint_every=40)
    out = tmp_path / "run"
    process = _start_run(_write_config(tmp_path / "long.yaml", config), out)
    try:
        _wait_for(out / checkpoint.CHECKPOINT, process)
        with pytest.raises(RunDirectoryInUseError, match=f"pid {process.pid} on "):
            gossamer.run(config, out=out, force=True)
        with pytest.raises(RunDirectoryInUseError, match=f"pid {process.pid} on "):
            gossamer.resume(out)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    if not (out / "summary.json").exists():  # (it may have finished meanwhile)
        gossamer.resume(out)
    assert (out / "summary.json").exists()


def test_a_lock_file_left_in_an_empty_directory_does_not_block_a_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".gossamer.lock").write_text("pid 1 on a machine long gone")  # killed at set-up
    gossamer.run(small_config(), out=out)
    assert (out / "summary.json").exists() and not (out / ".gossamer.lock").exists()


def test_a_run_refused_at_set_up_leaves_no_directory(tmp_path):
    with pytest.raises(ConfigError, match="eval.test_samples"):
        gossamer.run(small_config(**{"eval.test_samples": 10**6}), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_comparison_reaching_a_run_in_use_is_refused_before_any_run(tmp_path):
    from gossamer.workflow.lock import RunDirectoryInUseError

    source = small_config().model_dump(mode="json")
    holder = _hold_lock(tmp_path / "c" / "nosync")
    try:
        with pytest.raises(RunDirectoryInUseError) as raised:
            gossamer.compare(source, protocols=["dpsgd", "nosync"], out=tmp_path / "c")
        assert str(raised.value) == _in_use(tmp_path / "c" / "nosync", holder)
        assert not (tmp_path / "c" / "dpsgd").exists()  # refused before the first run
    finally:
        holder.kill()
        holder.wait()
    done = gossamer.compare(source, protocols=["dpsgd", "nosync"], out=tmp_path / "c")
    assert set(done.results) == {"dpsgd", "nosync"}
