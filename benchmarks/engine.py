"""Engine throughput against a naive per-node loop and the machine's own ceilings.

Prints, measured in one run on this machine:

1. node-steps per second of one training round (batch 32, every node trains) for
   the stacked engine and for the naive loop (N ``nn.Module``s and N ``torch.optim``
   optimizers stepped in Python), N = 16, 64, 256, for the MLP 784-200-10 (with SGD,
   SGD with momentum 0.9, and Adam) and the papers' CNNs (fp32, and bf16 autocast);
2. the engine's achieved GFLOP/s against a dense fp32 matmul measured here;
3. the gossip step X <- W X (N = 256, random 6-regular graph, Metropolis-Hastings)
   against one copy of X and against a naive loop over state dicts.

Both contenders run in the same process after ``tune_allocator()`` (see
docs/engine.md). Contenders are timed *interleaved* (one call of each in turn, until
the time budget is spent) and each figure is the median of its calls, so a ratio
compares calls made under the same conditions on a shared machine.

Usage:
    python benchmarks/engine.py                 # full table (a few minutes on 2 cores)
    python benchmarks/engine.py --nodes 16 64   # fewer sizes
    python benchmarks/engine.py --smoke         # tiny sizes: checks the script runs
    python benchmarks/engine.py --json out.json # also write the numbers
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from math import prod

import torch
import torch.nn.functional as F

from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator
from gossamer.sim.stacked import StackedTensors
from gossamer.sim.topology import Mixer, build_topology

BATCH = 32


def interleaved(contenders: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Median wall time of one call of each contender, calling them in turn.

    Each is called once to warm up; then the contenders are called round-robin until
    ``seconds`` have passed (at least 3 rounds).
    """
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    deadline = time.perf_counter() + seconds
    while len(times[next(iter(times))]) < 3 or time.perf_counter() < deadline:
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_gflops(seconds: float, size: int = 2048) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return 2 * size**3 / interleaved({"mm": lambda: torch.mm(a, b, out=out)}, seconds)["mm"] / 1e9


OPTIMIZERS = {  # name in the table -> the optimizer section of the config
    "sgd": {"name": "sgd", "lr": 0.01},
    "sgd m0.9": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
    "adam": {"name": "adam", "lr": 0.001},
}


def experiment(
    model: dict,
    shape: list[int],
    nodes: int,
    precision: str,
    classes: int = 10,
    optimizer: str = "sgd",
) -> Simulation:
    config = load_config(
        {
            "nodes": nodes,
            "device": "cpu",
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": BATCH,
                "test_fraction": 0.1,
                "synthetic": {
                    "samples": max(nodes * 80, classes * 20),
                    "shape": shape,
                    "classes": classes,
                },
            },
            "model": model,
            "optimizer": OPTIMIZERS[optimizer],
            "protocol": "nosync",
            "engine": {"precision": precision},
        }
    )
    return Simulation.build(config)


def engine_round(sim: Simulation) -> Callable[[], object]:
    return lambda: sim.population.train(1, round=0)


def naive_round(sim: Simulation, precision: str) -> Callable[[], None]:
    """N modules and N optimizers; each node draws a random batch of its own data."""
    n = sim.config.nodes
    modules = [copy.deepcopy(sim.model.template) for _ in range(n)]
    for module, row in zip(modules, sim.population.params.matrix(), strict=True):
        torch.nn.utils.vector_to_parameters(row.clone(), module.parameters())
    section = sim.config.optimizer
    if section.name == "adam":
        optimizers = [torch.optim.Adam(m.parameters(), lr=section.lr) for m in modules]
    else:
        optimizers = [
            torch.optim.SGD(m.parameters(), lr=section.lr, momentum=section.momentum)
            for m in modules
        ]
    data, table, counts = sim.dataset, sim.node_data.index, sim.node_data.counts
    autocast = precision == "bfloat16" and sim.model.uses_autocast
    layout = torch.channels_last if autocast else torch.contiguous_format
    if autocast:
        modules = [m.to(memory_format=layout) for m in modules]

    def round_() -> None:
        for i in range(n):
            idx = table[i, torch.randint(int(counts[i]), (BATCH,))]
            x, y = data.x_train[idx], data.y_train[idx]
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            optimizers[i].zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = F.cross_entropy(modules[i](x).float(), y)
            loss.backward()
            optimizers[i].step()

    return round_


MLP = {"name": "mlp", "hidden": [200]}
CASES = [  # (label, model section, input shape, classes, precision, optimizer)
    ("mlp 784-200-10", MLP, [784], 10, "float32", "sgd"),
    ("mlp 784-200-10", MLP, [784], 10, "float32", "sgd m0.9"),
    ("mlp 784-200-10", MLP, [784], 10, "float32", "adam"),
    ("cnn 28x28", {"name": "cnn"}, [1, 28, 28], 10, "float32", "sgd"),
    ("cnn 28x28", {"name": "cnn"}, [1, 28, 28], 10, "bfloat16", "sgd"),
    ("lenet 32x32x3", {"name": "lenet"}, [3, 32, 32], 10, "float32", "sgd"),
    ("lenet 32x32x3", {"name": "lenet"}, [3, 32, 32], 10, "bfloat16", "sgd"),
    ("femnist_cnn", {"name": "femnist_cnn"}, [1, 28, 28], 62, "float32", "sgd"),
    ("femnist_cnn", {"name": "femnist_cnn"}, [1, 28, 28], 62, "bfloat16", "sgd"),
]


def training_table(
    sizes: list[int], seconds: float, peak: float, smoke: bool, models: list[str] | None
) -> list[dict]:
    cases = [c for c in CASES if models is None or c[1]["name"] in models]
    if smoke:
        cases = [
            (
                name,
                {"name": "mlp", "hidden": [8]}
                if m["name"] == "mlp"
                else {"name": "cnn", "channels": [2], "hidden": 4},
                s,
                k,
                p,
                o,
            )
            for name, m, s, k, p, o in cases
        ]
    rows = []
    for name, model, shape, classes, precision, optimizer in cases:
        for n in sizes:
            sim = experiment(model, shape, n, precision, classes, optimizer)
            flops = sim.model.train_flops_per_sample() * BATCH  # per node-step
            timing = interleaved(
                {"engine": engine_round(sim), "naive": naive_round(sim, precision)}, seconds
            )
            engine, naive = n / timing["engine"], n / timing["naive"]
            row = {
                "model": name,
                "precision": precision,
                "optimizer": optimizer,
                "nodes": n,
                "naive_node_steps_per_s": naive,
                "engine_node_steps_per_s": engine,
                "speedup": engine / naive,
                "engine_gflops": engine * flops / 1e9,
                "fraction_of_matmul": engine * flops / 1e9 / peak,
            }
            rows.append(row)
            print(
                f"{name:15s} {precision:9s} {optimizer:9s} {n:5d} {naive:10.0f} {engine:10.0f} "
                f"{row['speedup']:7.2f}x {row['engine_gflops']:8.1f} "
                f"{100 * row['fraction_of_matmul']:6.1f}%",
                flush=True,
            )
            del sim
    return rows


def gossip(nodes: int, hidden: int, seconds: float) -> dict:
    """Mixing the stacked MLP 784-<hidden>-10 as the engine stores it (one block per tensor)."""
    config = load_config({"nodes": nodes, "topology": {"kind": "regular", "degree": 6}})
    topology = build_topology(config.topology, nodes, 0)
    mixer = Mixer(topology, torch.device("cpu"))
    shapes = [(hidden, 784), (hidden,), (10, hidden), (10,)]
    x = StackedTensors.from_matrix(torch.randn(nodes, sum(prod(s) for s in shapes)), shapes)
    target = x.clone()
    copy_and_mix = interleaved(
        {
            "copy": lambda: [t.copy_(b) for t, b in zip(target.blocks, x.blocks, strict=True)],
            "mix": lambda: mixer.apply_(x.blocks),
        },
        seconds,
    )
    copy_s, mix_s = copy_and_mix["copy"], copy_and_mix["mix"]
    neighbours = [sorted(topology.graph.neighbors(i)) for i in range(nodes)]
    weights = topology.dense()
    matrix = x.matrix()
    state = [{"w": matrix[i].clone()} for i in range(nodes)]

    def naive() -> None:  # per-node weighted average of neighbour state dicts
        mixed = []
        for i in range(nodes):
            acc = {k: v * float(weights[i, i]) for k, v in state[i].items()}
            for j in neighbours[i]:
                for k in acc:
                    acc[k] += float(weights[i, j]) * state[j][k]
            mixed.append(acc)
        state[:] = mixed

    naive_s = interleaved({"naive": naive}, seconds)["naive"]
    return {
        "nodes": nodes,
        "params": x.num_params,
        "x_megabytes": nodes * x.num_params * 4 / 1e6,
        "copy_ms": 1e3 * copy_s,
        "mix_ms": 1e3 * mix_s,
        "mix_over_copy": mix_s / copy_s,
        "naive_loop_ms": 1e3 * naive_s,
        "naive_over_mix": naive_s / mix_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per figure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--only", choices=["training", "gossip"], help="run one part")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted({c[1]["name"] for c in CASES}),
        help="training cases to run (default: all)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.seconds = [4], 0.01
    tune_allocator()
    peak = matmul_gflops(args.seconds, 256 if args.smoke else 2048)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}; dense fp32 matmul {peak:.1f} GFLOP/s\n"
    )
    rows: list[dict] = []
    mix: dict = {}
    if args.only != "gossip":
        print(
            f"{'model':15s} {'precision':9s} {'optimizer':9s} {'N':>5s} {'naive':>10s} "
            f"{'engine':>10s} "
            f"{'speedup':>8s} {'GFLOP/s':>8s} {'%matmul':>7s}   (node-steps/s, batch {BATCH})"
        )
        rows = training_table(args.nodes, args.seconds, peak, args.smoke, args.models)
    if args.only != "training":
        mix = gossip(*((8, 4) if args.smoke else (256, 200)), args.seconds)
        print(
            f"\ngossip N={mix['nodes']} P={mix['params']:,} ({mix['x_megabytes']:.0f} MB), "
            f"6-regular MH: copy of X {mix['copy_ms']:.1f} ms, mixing {mix['mix_ms']:.1f} ms "
            f"({mix['mix_over_copy']:.2f}x copy), naive state-dict loop "
            f"{mix['naive_loop_ms']:.1f} ms ({mix['naive_over_mix']:.1f}x slower than mixing)"
        )
    report_targets(rows, mix)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"matmul_gflops": peak, "training": rows, "gossip": mix}, handle, indent=2)


def report_targets(rows: list[dict], mix: dict) -> None:
    """The core engine issue's targets, met or missed, as measured in this run."""
    lines = []
    for r in rows:
        if r["model"].startswith("mlp") and r["nodes"] == 256 and r["optimizer"] == "sgd":
            met = "met" if r["speedup"] >= 3 else "MISSED"
            lines.append(f"mlp N=256 speedup {r['speedup']:.2f}x (>= 3x: {met})")
            met = "met" if r["fraction_of_matmul"] >= 0.6 else "MISSED"
            lines.append(f"{100 * r['fraction_of_matmul']:.0f}% of matmul (>= 60%: {met})")
    if mix:
        met = "met" if mix["mix_over_copy"] <= 3 else "MISSED"
        lines.append(f"mixing {mix['mix_over_copy']:.2f}x copy (<= 3x: {met})")
    if lines:
        print("\ntargets: " + "; ".join(lines))


if __name__ == "__main__":
    main()
