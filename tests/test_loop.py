"""Whole runs: the quickstart, determinism, run directories."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import gossamer
from conftest import small_config
from gossamer.config import ConfigError
from gossamer.sim import METRIC_COLUMNS


def test_quickstart_dpsgd_on_digits_beats_85_percent():
    result = gossamer.run(overrides=["device=cpu"])
    assert result.config.data.dataset == "digits" and result.config.nodes == 32
    assert result.final["test_accuracy_mean"] > 0.85
    assert result.final["avg_model_accuracy"] > 0.85


def test_same_seed_same_metrics_and_other_seed_other_metrics():
    a, b = gossamer.run(small_config()), gossamer.run(small_config())
    c = gossamer.run(small_config(seed=4))
    for key in METRIC_COLUMNS[1:-1]:
        assert np.array_equal(a.metrics[key], b.metrics[key], equal_nan=True), key
    assert not np.array_equal(a.metrics["test_loss_mean"], c.metrics["test_loss_mean"])


@pytest.mark.parametrize("protocol", ["dpsgd", "periodic"])
def test_node_chunking_does_not_change_results(protocol):
    whole = gossamer.run(small_config(protocol=protocol, nodes=10, rounds=6))
    chunked = gossamer.run(
        small_config(**{"protocol": protocol, "nodes": 10, "rounds": 6, "engine.node_chunk": 3})
    )
    for key in ("test_accuracy_mean", "test_loss_mean", "avg_model_accuracy", "consensus_distance"):
        np.testing.assert_allclose(chunked.metrics[key], whole.metrics[key], rtol=1e-5, atol=1e-9)
    assert chunked.totals == whole.totals


def test_run_directory_contents(tmp_path):
    out = tmp_path / "run"
    result = gossamer.run(small_config(), out=out)
    assert result.run_dir == out
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "labels.csv",
        "metrics.csv",
        "nodes.csv",
        "rounds.csv",
        "summary.json",
        "topology.csv",
    ]
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(METRIC_COLUMNS)
    assert [int(r["round"]) for r in rows] == [0, 2, 4]
    summary = json.loads((out / "summary.json").read_text())
    assert {"rounds", "nodes", "final", "totals", "wall_seconds"} <= set(summary)
    assert {"test_accuracy_mean", "avg_model_accuracy"} <= set(summary["final"])
    assert {"messages", "bytes_sent", "local_steps", "energy_joules"} <= set(summary["totals"])
    assert summary["totals"]["bytes_sent"] == int(rows[-1]["bytes_sent"])
    assert gossamer.load_config(out / "config.yaml") == result.config
    with open(out / "nodes.csv") as f:
        nodes = list(csv.DictReader(f))
    assert len(nodes) == 6 and sum(int(n["train_samples"]) for n in nodes) == 240
    with open(out / "labels.csv") as f:
        labels = list(csv.DictReader(f))
    for node, row in zip(nodes, labels, strict=True):  # histograms add up to the counts
        assert sum(int(row[f"class_{c}"]) for c in range(3)) == int(node["train_samples"])
    assert np.array_equal(result.label_counts.sum(1), [int(n["train_samples"]) for n in nodes])
    with open(out / "topology.csv") as f:
        edges = list(csv.DictReader(f))  # each undirected edge once, u < v
    assert len(edges) == summary["topology"]["edges"]
    assert all(int(e["u"]) < int(e["v"]) for e in edges)
    degree = np.bincount([int(e[k]) for e in edges for k in ("u", "v")], minlength=6)
    assert np.array_equal(degree, [int(n["degree"]) for n in nodes])


def test_finished_run_directory_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    gossamer.run(small_config(), out=out)
    before = (out / "summary.json").read_text()
    with pytest.raises(ConfigError, match="holds a finished run"):
        gossamer.run(small_config(seed=9), out=out)
    assert (out / "summary.json").read_text() == before
    gossamer.run(small_config(seed=9), out=out, force=True)
    assert (out / "summary.json").read_text() != before


def test_bad_config_fails_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        gossamer.run({"nodes": -1}, out=out)
    assert not out.exists()


def test_progress_callback_sees_every_round():
    seen = []
    gossamer.run(small_config(), progress=lambda r, row: seen.append((r, row is not None)))
    assert seen == [(0, True), (1, False), (2, True), (3, False), (4, True)]


def test_non_finite_numbers_in_a_config_are_refused():
    from gossamer.config import ConfigError, load_config

    for key in ("optimizer.lr", "optimizer.weight_decay", "data.synthetic.separation"):
        for value in ("inf", "nan", "-inf"):
            with pytest.raises(ConfigError, match=f"{key}: input should be a finite number"):
                load_config(None, [f"{key}={value}"])


def test_a_diverging_run_stops_naming_the_round_and_nodes_and_keeps_its_checkpoint(tmp_path):
    import gossamer
    from gossamer.config import DivergedError
    from gossamer.workflow import checkpoint

    out = tmp_path / "run"
    config = small_config(rounds=12, eval_every=3, checkpoint_every=2)
    gossamer.run(config, out=tmp_path / "ok")  # converges at the configured lr
    diverging = small_config(rounds=12, eval_every=3, checkpoint_every=2, **{"optimizer.lr": 1e3})
    with pytest.raises(DivergedError, match=r"round 9: training diverged on 6 node\(s\) \(0, "):
        gossamer.run(diverging, out=out)
    saved = json.loads(checkpoint.read_safetensors(out / checkpoint.CHECKPOINT)[1]["gossamer"])
    assert saved["next_round"] == 8  # the last checkpoint, from before the divergence, is intact
    assert not (out / "summary.json").exists()


def test_output_files_respect_the_umask(tmp_path):
    import os

    previous = os.umask(0o027)
    try:
        gossamer.run(small_config(), out=tmp_path / "run")
    finally:
        os.umask(previous)
    for name in ("config.yaml", "metrics.csv", "summary.json", "nodes.csv"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o640, name
