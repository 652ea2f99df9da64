"""The benchmark script runs (tiny sizes); it is a measurement, not a timed test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def smoke_run(script: str, tmp_path) -> dict:
    """Run ``benchmarks/<script> --smoke`` and return the numbers it wrote."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(out.read_text())


def test_engine_benchmark_smoke_run(tmp_path):
    measured = smoke_run("engine.py", tmp_path)
    assert measured["matmul_gflops"] > 0
    models = {row["model"].split()[0] for row in measured["training"]}
    assert models == {"mlp", "cnn", "lenet", "femnist_cnn"}
    assert all(row["engine_node_steps_per_s"] > 0 for row in measured["training"])
    assert measured["gossip"]["mix_ms"] > 0


def test_checkpoint_benchmark_smoke_run(tmp_path):
    (row,) = smoke_run("checkpoint.py", tmp_path)["checkpoint"]
    assert row["nodes"] == 8 and row["parameters"] == 16 * 8 + 8 + 8 * 10 + 10
    assert row["checkpoint_mb"] > 0 and row["save_s"] > 0 and row["load_s"] > 0


def test_network_benchmark_smoke_run(tmp_path):
    rows = smoke_run("network.py", tmp_path)["network"]
    assert {row["condition"] for row in rows} >= {"ideal", "churn 30%", "loss 10%"}
    assert all(row["round_ms"] > 0 and row["gossip_ms"] > 0 for row in rows)


def test_distributed_benchmark_smoke_run(tmp_path):
    measured = smoke_run("distributed.py", tmp_path)
    (ring,) = measured["mixing"]
    # a ring of 16 nodes on 2 ranks: each rank needs 2 rows of the other (of 8)
    assert ring["bytes_ratio"] == 2 / 8 and ring["halo_ms"] > 0
    assert [row["ranks"] for row in measured["rounds"]] == [1, 2]
    assert measured["largest"]["MB_per_node"] > 0


def test_evaluation_benchmark_smoke_run(tmp_path):
    measured = smoke_run("evaluation.py", tmp_path)
    assert {row["model"] for row in measured["rate"]} == {"lenet", "mlp"}
    assert [row["model"] for row in measured["layout"]] == ["lenet", "resnet20"]
    assert all(row["speedup"] > 0 for row in measured["layout"])
    assert all(row["gflops"] > 0 for row in measured["rate"])
    full, nodes_only, sampled = measured["skiptrain_cifar10"]
    assert 0 < sampled["share"] < nodes_only["share"] < full["share"] < 1
    assert len(measured["sampling"]) == 4
    assert all(0 <= row["covered"] <= 1 for row in measured["sampling"])


def test_delta_calibration_benchmark_smoke_run(tmp_path):
    rows = smoke_run("delta_calibration.py", tmp_path)["calibration"]
    assert len(rows) == 2 and all(row["delta"] > 0 for row in rows)
    assert all(0 <= row["realized"] <= 1 for row in rows)


def test_round_benchmark_smoke_run(tmp_path):
    (row,) = smoke_run("round.py", tmp_path)["rounds"]
    assert row["nodes"] == 16 and row["round_s"] > 0 and row["gossip_s"] > 0
    assert row["round_over_training"] > 0


def test_compression_benchmark_smoke_run(tmp_path):
    measured = smoke_run("compression.py", tmp_path)
    variants = {row["variant"] for row in measured["rounds"]}
    assert {"D-PSGD top-1% (naive)", "CHOCO top-1%", "CHOCO sign"} <= variants
    assert all(row["round_s"] > 0 < row["uncompressed_round_s"] for row in measured["rounds"])
    assert all(row["relative_error"] == 0 for row in measured["bytes"])  # the rules hold


def test_aggregation_benchmark_smoke_run(tmp_path):
    rows = smoke_run("aggregation.py", tmp_path)["rows"]
    assert {(row["protocol"], row["aggregator"]) for row in rows} == {
        (protocol, aggregator)
        for protocol in ("D-PSGD", "periodic")
        for aggregator in ("mean", "median", "trimmed mean 0.2")
    }
    assert all(row["round_s"] > 0 and row["combine_s"] > 0 for row in rows)
