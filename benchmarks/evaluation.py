"""What evaluating costs, and what sampling it saves and loses.

Prints, measured in one run on this machine:

1. **the evaluation path against its FLOP bound**: n nodes' models on M test samples
   (LeNet on CIFAR-10-sized images, the MLP 784-200-10 on MNIST-sized ones): the
   rate in GFLOP/s of forward passes, against this machine's dense float32 matmul
   rate (the bound), and the time per node and test sample;
2. **the share of wall time the SkipTrain CIFAR-10 example spends evaluating**
   (256 nodes, LeNet, 1,000 rounds of 20 local steps of batch 32, an evaluation
   every 50 rounds and of the initial models, 10,000 test images), from the measured
   cost of a node-step and of a node's evaluation per test image: with every node on
   the whole test set, and with ``eval.nodes: 64`` and ``eval.test_samples: 2000``;
3. **the sampling error on built-in data** (the quickstart's digits, and a synthetic
   task): runs with and without sampling train identically; at every evaluation the
   sampled mean accuracy is compared with the full one: mean and largest absolute
   error, the mean half-width of the reported 95% interval, and how often the
   interval held the full evaluation's value.

Usage:
    python benchmarks/evaluation.py            # about 3 minutes on 2 cores
    python benchmarks/evaluation.py --smoke    # tiny sizes: checks the script runs
    python benchmarks/evaluation.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import gossamer
from engine import matmul_gflops  # the sibling benchmark's matmul rate
from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator

MODELS = {
    "lenet": ({"name": "lenet"}, [3, 32, 32]),
    "mlp": ({"name": "mlp", "hidden": [200]}, [784]),
}


def build(model: str, nodes: int, test: int, batch: int = 32) -> Simulation:
    section, shape = MODELS[model]
    return Simulation.build(
        load_config(
            {
                "nodes": nodes,
                "device": "cpu",
                "data": {
                    "dataset": "synthetic",
                    "partition": "iid",
                    "batch_size": batch,
                    "test_fraction": test / (nodes * 64 + test),
                    "synthetic": {"samples": nodes * 64 + test, "shape": shape, "classes": 10},
                },
                "model": section,
                "protocol": "nosync",
            }
        )
    )


def evaluation_rate(model: str, nodes: int, test: int, repeats: int) -> dict:
    sim = build(model, nodes, test)
    sim.population.evaluate()  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sim.population.evaluate()
        times.append(time.perf_counter() - start)
    seconds = min(times)
    measured = len(sim.dataset.y_test)
    flops = nodes * measured * sim.model.forward_flops_per_sample()
    return {
        "model": model,
        "nodes": nodes,
        "test_samples": measured,
        "seconds": seconds,
        "gflops": flops / seconds / 1e9,
        "us_per_node_sample": seconds / (nodes * measured) * 1e6,
    }


def training_step_seconds(model: str, nodes: int, rounds: int) -> float:
    """Seconds per node-step of local training (batch 32)."""
    sim = build(model, nodes, 64)
    sim.population.train(1, round=0)  # warm up
    start = time.perf_counter()
    for t in range(rounds):
        sim.population.train(1, round=t)
    return (time.perf_counter() - start) / (rounds * nodes)


def skiptrain_share(step_s: float, eval_s: float) -> list[dict]:
    """The SkipTrain CIFAR-10 example's evaluation share of wall time, from the
    measured seconds per node-step and per (node, test image)."""
    nodes, rounds, steps, every, test = 256, 1000, 20, 50, 10_000
    training = rounds * nodes * steps * step_s
    evaluations = rounds // every + 1  # and the initial models
    rows = []
    for name, sampled_nodes, sampled_test in (
        ("every node, whole test set", 256, test),
        ("eval.nodes 64, eval.test_samples 2000", 64, 2000),
    ):
        # the final evaluation always measures everything
        per_call = sampled_nodes * sampled_test * eval_s
        final = nodes * test * eval_s
        evaluating = (evaluations - 1) * per_call + final
        rows.append(
            {
                "evaluation": name,
                "training_hours": training / 3600,
                "evaluating_hours": evaluating / 3600,
                "share": evaluating / (training + evaluating),
            }
        )
    return rows


def sampling_error(config: dict, overrides: list[str]) -> dict:
    full = gossamer.run(config)
    sampled = gossamer.run(config, overrides=overrides)
    error = (sampled.metrics["test_accuracy_mean"] - full.metrics["test_accuracy_mean"])[:-1]
    ci = sampled.metrics["test_accuracy_mean_ci95"][:-1]
    return {
        "data": config["data"]["dataset"],
        "sampling": " ".join(overrides),
        "evaluations": len(error),
        "mean_abs_error": float(np.abs(error).mean()),
        "max_abs_error": float(np.abs(error).max()),
        "mean_ci95_half_width": float(ci.mean()),
        "covered": float((np.abs(error) <= ci + 1e-12).mean()),
        "wall_s_full": float(full.summary["wall_seconds"]),
        "wall_s_sampled": float(sampled.summary["wall_seconds"]),
    }


def show(row: dict) -> None:
    def fmt(v):
        return f"{v:,.4g}" if isinstance(v, float) else str(v)

    print("  " + ", ".join(f"{k} {fmt(v)}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    results: dict = {}
    bound = matmul_gflops(0.2 if args.smoke else 2.0, 256 if args.smoke else 2048)
    results["matmul_gflops"] = bound
    print(f"1. evaluation against the FLOP bound ({bound:.1f} GFLOP/s dense float32 matmul)")
    sizes = (
        {"lenet": (2, 64), "mlp": (4, 64)}
        if args.smoke
        else {"lenet": (32, 2000), "mlp": (256, 10_000)}
    )
    results["rate"] = []
    for model, (nodes, test) in sizes.items():
        row = evaluation_rate(model, nodes, test, 1 if args.smoke else 3)
        row["bound_over_rate"] = bound / row["gflops"]
        results["rate"].append(row)
        show(row)
    print("2. the SkipTrain CIFAR-10 example's time evaluating")
    step_s = training_step_seconds("lenet", 2 if args.smoke else 32, 1 if args.smoke else 3)
    lenet = next(r for r in results["rate"] if r["model"] == "lenet")
    eval_s = lenet["us_per_node_sample"] / 1e6
    results["skiptrain_cifar10"] = skiptrain_share(step_s, eval_s)
    results["lenet_node_step_s"] = step_s
    print(f"  LeNet: {step_s * 1e3:.1f} ms a node-step, {eval_s * 1e6:.1f} us a node-image")
    for row in results["skiptrain_cifar10"]:
        show(row)
    print("3. sampling error on built-in data")
    quickstart = {
        "seed": 0,
        "nodes": 32,
        "rounds": 200,
        "eval_every": 5,
        "device": "cpu",
        "data": {"dataset": "digits", "partition": "dirichlet", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [64]},
    }
    synthetic = {
        "seed": 0,
        "nodes": 64,
        "rounds": 100,
        "eval_every": 2,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "partition": "dirichlet",
            "batch_size": 16,
            "synthetic": {"samples": 12_000, "shape": [32], "classes": 10},
        },
        "model": {"name": "mlp", "hidden": [64]},
    }
    if args.smoke:
        quickstart["rounds"], synthetic["rounds"] = 10, 10
    results["sampling"] = [
        sampling_error(quickstart, ["eval.nodes=8", "eval.test_samples=120"]),
        sampling_error(synthetic, ["eval.nodes=16", "eval.test_samples=500"]),
    ]
    for row in results["sampling"]:
        show(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
