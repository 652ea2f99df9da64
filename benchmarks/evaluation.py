"""What evaluating costs, and what sampling it saves and loses.

Prints, measured in one run on this machine:

1. **the evaluation path against its FLOP bound**: n nodes' models on M test samples
   (LeNet on CIFAR-10-sized images, the MLP 784-200-10 on MNIST-sized ones): the
   rate in GFLOP/s of forward passes, against this machine's dense float32 matmul
   rate (the bound), and the time per node and test sample; and how much faster
   evaluation's convolutions run in channels_last than in NCHW (LeNet, ResNet-20);
2. **the share of wall time the SkipTrain CIFAR-10 example spends evaluating**
   (256 nodes, LeNet, 1,000 rounds of 20 local steps of batch 32, an evaluation
   every 50 rounds and of the initial models, 10,000 test images), from the measured
   cost of a node-step and of a node's evaluation per test image: with every node on
   the whole test set, with ``eval.nodes: 64`` on the whole test set, and with
   ``eval.nodes: 64`` and ``eval.test_samples: 2000``;
3. **the sampling error on built-in data** (the quickstart's digits, a small
   synthetic task, and a synthetic task at the SkipTrain CIFAR-10 example's scale: 256
   nodes with 2 label-sorted shards each on a 6-regular graph, 40,000 training and
   10,000 test samples, three seeds, sampled as in 2.): runs with and without sampling
   train identically; at every evaluation but the last (which measures everything)
   the sampled mean accuracy is compared with the full one: mean and largest absolute
   error, the mean half-width of the reported 95% interval, and how often the
   interval held the full evaluation's value.

Usage:
    python benchmarks/evaluation.py            # about 4 minutes on 2 cores
    python benchmarks/evaluation.py --smoke    # tiny sizes: checks the script runs
    python benchmarks/evaluation.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import gossamer
from engine import matmul_gflops  # the sibling benchmark's matmul rate
from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator
from gossamer.sim.models import layers

MODELS = {
    "lenet": ({"name": "lenet"}, [3, 32, 32]),
    "mlp": ({"name": "mlp", "hidden": [200]}, [784]),
    "resnet20": ({"name": "resnet20"}, [3, 32, 32]),
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


def layout_speedup(model: str, nodes: int, test: int, repeats: int) -> dict:
    """Evaluation in float32 with its convolutions in channels_last (gossamer's choice)
    against NCHW, timed interleaved; the median of ``repeats`` calls each."""
    sim = build(model, nodes, test)
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(repeats + 1):  # the first of each warms up
            for channels_last in (True, False):
                layers.EVALUATION_CHANNELS_LAST = channels_last
                start = time.perf_counter()
                sim.population.evaluate()
                times[channels_last].append(time.perf_counter() - start)
    finally:
        layers.EVALUATION_CHANNELS_LAST = True
    fast, plain = (statistics.median(times[k][1:]) for k in (True, False))
    return {
        "model": model,
        "nodes": nodes,
        "test_samples": len(sim.dataset.y_test),
        "channels_last_s": fast,
        "nchw_s": plain,
        "speedup": plain / fast,
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
        ("eval.nodes 64, whole test set", 64, test),
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


def sampling_error(config: dict, overrides: list[str], seeds: tuple[int, ...] = (0,)) -> dict:
    """Sampled against full evaluations of the same runs, over ``seeds``."""
    errors, intervals, wall_full, wall_sampled, accuracy = [], [], 0.0, 0.0, []
    for seed in seeds:
        seeded = {**config, "seed": seed}
        full = gossamer.run(seeded)
        sampled = gossamer.run(seeded, overrides=overrides)
        measured = full.metrics["test_accuracy_mean"]
        errors.append((sampled.metrics["test_accuracy_mean"] - measured)[:-1])
        intervals.append(sampled.metrics["test_accuracy_mean_ci95"][:-1])
        accuracy.append(float(measured[-1]))
        wall_full += full.summary["wall_seconds"]
        wall_sampled += sampled.summary["wall_seconds"]
    error, ci = np.concatenate(errors), np.concatenate(intervals)
    return {
        "data": config["data"]["dataset"],
        "nodes": config["nodes"],
        "sampling": " ".join(overrides),
        "seeds": len(seeds),
        "final_accuracy": float(np.mean(accuracy)),
        "evaluations": len(error),
        "mean_abs_error": float(np.abs(error).mean()),
        "max_abs_error": float(np.abs(error).max()),
        "mean_ci95_half_width": float(ci.mean()),
        "covered": float((np.abs(error) <= ci + 1e-12).mean()),
        "wall_s_full": float(wall_full),
        "wall_s_sampled": float(wall_sampled),
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
    print("   evaluation's convolutions in channels_last against NCHW (float32)")
    layouts = (
        {"lenet": (2, 64), "resnet20": (2, 32)}
        if args.smoke
        else {
            "lenet": (32, 1000),
            "resnet20": (8, 256),
        }
    )
    results["layout"] = [
        layout_speedup(model, nodes, test, 1 if args.smoke else 3)
        for model, (nodes, test) in layouts.items()
    ]
    for row in results["layout"]:
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
    # the SkipTrain CIFAR-10 example's shape: 256 nodes, 2 label-sorted shards each,
    # 40,000 / 10,000 samples, a 6-regular graph; sampled as in 2.
    example = {
        "nodes": 256,
        "rounds": 200,
        "eval_every": 10,
        "local_steps": 2,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "partition": "shards",
            "shards_per_node": 2,
            "batch_size": 32,
            "test_fraction": 0.2,
            "synthetic": {"samples": 50_000, "shape": [32], "classes": 10, "clusters_per_class": 4},
        },
        "model": {"name": "mlp", "hidden": [64]},
        "optimizer": {"lr": 0.1},
        "topology": {"kind": "regular", "degree": 6},
    }
    seeds = (0, 1, 2)
    samplings = (["eval.nodes=64"], ["eval.nodes=64", "eval.test_samples=2000"])
    if args.smoke:
        quickstart["rounds"], synthetic["rounds"] = 10, 10
        example.update(nodes=16, rounds=10, eval_every=5)
        example["data"]["synthetic"]["samples"] = 2000
        seeds = (0,)
        samplings = (["eval.nodes=4"], ["eval.nodes=4", "eval.test_samples=100"])
    results["sampling"] = [
        sampling_error(quickstart, ["eval.nodes=8", "eval.test_samples=120"]),
        sampling_error(synthetic, ["eval.nodes=16", "eval.test_samples=500"]),
        *(sampling_error(example, sampling, seeds) for sampling in samplings),
    ]
    for row in results["sampling"]:
        show(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
