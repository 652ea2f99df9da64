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

On a GPU (``--gpu``, what ``benchmarks/gpu_check.sh`` runs) the cases are the MLP
at N = 1,000, 10,000 and 100,000 and LeNet and ResNet-20 at N = 256, 1,024 and 4,096
in fp32 and bf16, each against the device's own matmul rate in its precision; the
naive loop runs at the smallest N of each model only (it takes seconds a round).

Usage:
    python benchmarks/engine.py                 # full table (a few minutes on 2 cores)
    python benchmarks/engine.py --nodes 16 64   # fewer sizes
    python benchmarks/engine.py --smoke         # tiny sizes: checks the script runs
    python benchmarks/engine.py --gpu           # the GPU table (CUDA; about 2 minutes)
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
from gossamer.sim.engine import cuda_settings, tune_allocator
from gossamer.sim.stacked import StackedTensors
from gossamer.sim.topology import Mixer, build_topology

BATCH = 32
CPU = torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a CUDA call returns before its kernels end)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    contenders: dict[str, Callable[[], object]],
    seconds: float,
    device: torch.device = CPU,
) -> dict[str, float]:
    """Median wall time of one call of each contender, calling them in turn.

    Each is called once to warm up; then the contenders are called round-robin until
    ``seconds`` have passed (at least 3 rounds). On a GPU each call is timed to the end
    of its kernels.
    """
    for fn in contenders.values():
        fn()
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    deadline = time.perf_counter() + seconds
    while len(times[next(iter(times))]) < 3 or time.perf_counter() < deadline:
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_gflops(
    seconds: float,
    size: int = 2048,
    device: torch.device = CPU,
    dtype: torch.dtype = torch.float32,
) -> float:
    """Dense (size x size) @ (size x size) matmul rate in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    timing = interleaved({"mm": lambda: torch.mm(a, b, out=out)}, seconds, device)
    return 2 * size**3 / timing["mm"] / 1e9


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
    device: str = "cpu",
    samples_per_node: int = 80,
    node_chunk: int = 0,
    autotune: bool = True,
) -> Simulation:
    config = load_config(
        {
            "nodes": nodes,
            "device": device,
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": BATCH,
                "test_fraction": 0.1,
                "synthetic": {
                    "samples": max(nodes * samples_per_node, classes * 20),
                    "shape": shape,
                    "classes": classes,
                },
            },
            "model": model,
            "optimizer": OPTIMIZERS[optimizer],
            "protocol": "nosync",
            "engine": {"precision": precision, "node_chunk": node_chunk, "autotune": autotune},
        }
    )
    return Simulation.build(config)


def engine_round(sim: Simulation) -> Callable[[], object]:
    return lambda: sim.population.train(1, round=0)


def naive_round(sim: Simulation, precision: str) -> Callable[[], None]:
    """N modules and N optimizers; each node draws a random batch of its own data."""
    n, device = sim.config.nodes, sim.population.device
    modules = [copy.deepcopy(sim.model.template).to(device) for _ in range(n)]
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
    data, table = sim.dataset, sim.node_data.index
    counts = sim.node_data.counts.tolist()  # read once: no device sync per node
    autocast = precision == "bfloat16" and sim.model.uses_autocast
    layout = torch.channels_last if autocast else torch.contiguous_format
    if autocast:
        modules = [m.to(memory_format=layout) for m in modules]

    def round_() -> None:
        # the engine's precision and cuDNN mode
        with cuda_settings(device, precision == "tf32", sim.config.engine.autotune):
            loop()

    def loop() -> None:
        for i in range(n):
            idx = table[i, torch.randint(counts[i], (BATCH,), device=device)]
            x, y = data.prepare(data.x_train[idx]), data.y_train[idx]
            if x.dim() == 4:
                x = x.contiguous(memory_format=layout)
            optimizers[i].zero_grad()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
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


# On a GPU: (label, model section, input shape, classes, precision, optimizer, sizes)
GPU_CASES = [
    ("mlp 784-200-10", MLP, [784], 10, "float32", "sgd", [1_000, 10_000, 100_000]),
    ("mlp 784-200-10", MLP, [784], 10, "tf32", "sgd", [10_000]),
    *[
        (label, {"name": name}, [3, 32, 32], 10, precision, "sgd", sizes)
        for label, name in (("lenet 32x32x3", "lenet"), ("resnet20", "resnet20"))
        for precision, sizes in (
            ("float32", [256, 1024, 4096]),
            ("tf32", [1024]),
            ("bfloat16", [256, 1024, 4096]),
        )
    ],
]


def training_table(
    cases: list[tuple],
    seconds: float,
    peaks: dict[str, float],
    device: str = "cpu",
    naive_up_to: int | None = None,
    autotune: bool = True,
) -> list[dict]:
    """One row per (case, N): the engine's and the naive loop's node-steps per second.

    ``cases``: (label, model, shape, classes, precision, optimizer, sizes); ``peaks``:
    the device's matmul GFLOP/s by precision; the naive loop runs where N is at most
    ``naive_up_to`` (None: always).
    """
    rows = []
    for name, model, shape, classes, precision, optimizer, sizes in cases:
        for n in sizes:
            # few samples a node at large N or on a GPU: generating them is set-up
            per_node = 80 if n <= 10_000 and device == "cpu" else (32 if n <= 10_000 else 10)
            sim = experiment(
                model, shape, n, precision, classes, optimizer, device, per_node, 0, autotune
            )
            flops = sim.model.train_flops_per_sample() * BATCH  # per node-step
            contenders = {"engine": engine_round(sim)}
            if naive_up_to is None or n <= naive_up_to:
                contenders["naive"] = naive_round(sim, precision)
            timing = interleaved(contenders, seconds, sim.population.device)
            engine = n / timing["engine"]
            naive = n / timing["naive"] if "naive" in timing else float("nan")
            peak = peaks[precision]
            row = {
                "model": name,
                "precision": precision,
                "optimizer": optimizer,
                "nodes": n,
                "node_chunk": sim.population.chunk,
                "autotune": autotune,
                "naive_node_steps_per_s": naive,
                "engine_node_steps_per_s": engine,
                "speedup": engine / naive,
                "engine_gflops": engine * flops / 1e9,
                "fraction_of_matmul": engine * flops / 1e9 / peak,
            }
            rows.append(row)
            print(
                f"{name:15s} {precision:9s} {optimizer:9s} {n:6d} {naive:10.0f} {engine:10.0f} "
                f"{row['speedup']:7.2f}x {row['engine_gflops']:9.1f} "
                f"{100 * row['fraction_of_matmul']:6.1f}%",
                flush=True,
            )
            del sim, contenders
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def cpu_cases(sizes: list[int], smoke: bool, models: list[str] | None) -> list[tuple]:
    cases = [(*c, sizes) for c in CASES if models is None or c[1]["name"] in models]
    if smoke:
        tiny = {"name": "cnn", "channels": [2], "hidden": 4}
        cases = [
            (name, {"name": "mlp", "hidden": [8]} if m["name"] == "mlp" else tiny, *rest)
            for name, m, *rest in cases
        ]
    return cases


def gossip(nodes: int, hidden: int, seconds: float, device: str = "cpu") -> dict:
    """Mixing the stacked MLP 784-<hidden>-10 as the engine stores it (one block per tensor)."""
    where = torch.device(device)
    config = load_config({"nodes": nodes, "topology": {"kind": "regular", "degree": 6}})
    topology = build_topology(config.topology, nodes, 0)
    mixer = Mixer(topology, where)
    shapes = [(hidden, 784), (hidden,), (10, hidden), (10,)]
    x = StackedTensors.from_matrix(torch.randn(nodes, sum(prod(s) for s in shapes)), shapes)
    x = StackedTensors.from_matrix(x.matrix().to(where), shapes)
    target = x.clone()
    copy_and_mix = interleaved(
        {
            "copy": lambda: [t.copy_(b) for t, b in zip(target.blocks, x.blocks, strict=True)],
            "mix": lambda: mixer.apply_(x.blocks),
        },
        seconds,
        where,
    )
    copy_s, mix_s = copy_and_mix["copy"], copy_and_mix["mix"]
    neighbours = [sorted(topology.graph.neighbors(i)) for i in range(nodes)]
    weights = topology.dense()
    matrix = x.matrix()
    state = [{"w": matrix[i].clone()} for i in range(nodes)]  # on the device of X

    def naive() -> None:  # per-node weighted average of neighbour state dicts
        mixed = []
        for i in range(nodes):
            acc = {k: v * float(weights[i, i]) for k, v in state[i].items()}
            for j in neighbours[i]:
                for k in acc:
                    acc[k] += float(weights[i, j]) * state[j][k]
            mixed.append(acc)
        state[:] = mixed

    naive_s = interleaved({"naive": naive}, seconds, where)["naive"]
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
    parser.add_argument(
        "--nodes", type=int, nargs="+", help="sizes (default: 16 64 256; on a GPU each case's)"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per figure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--gpu", action="store_true", help="the GPU table, on CUDA")
    parser.add_argument(
        "--precisions", nargs="+", help="GPU cases of these engine.precision values only"
    )
    parser.add_argument(
        "--no-autotune", action="store_true", help="engine.autotune false (cuDNN heuristics)"
    )
    parser.add_argument("--only", choices=["training", "gossip"], help="run one part")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=sorted({c[1]["name"] for c in CASES + GPU_CASES}),
        help="training cases to run (default: all)",
    )
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.seconds = [4], 0.01
    device = "cuda" if args.gpu else "cpu"
    where = torch.device(device)
    if args.gpu:
        if not torch.cuda.is_available():
            parser.error("--gpu: no CUDA device is visible")
        cases = [c for c in GPU_CASES if args.models is None or c[1]["name"] in args.models]
        cases = [c for c in cases if args.precisions is None or c[4] in args.precisions]
        if args.nodes:
            cases = [(*c[:6], args.nodes) for c in cases]
        if args.smoke:
            cases = [(*c[:6], [min(c[6])]) for c in cases]
    else:
        tune_allocator()
        cases = cpu_cases(args.nodes or [16, 64, 256], args.smoke, args.models)
    size = 256 if args.smoke else (8192 if args.gpu else 2048)
    peaks = {
        "float32": matmul_gflops(args.seconds, size, where),
        "bfloat16": matmul_gflops(args.seconds, size, where, torch.bfloat16),
    }
    with cuda_settings(where, tf32=True):  # on CPU: float32 again
        peaks["tf32"] = matmul_gflops(args.seconds, size, where)
    if args.gpu:
        name = torch.cuda.get_device_name(where)
        print(
            f"torch {torch.__version__}, {name}; dense matmul fp32 {peaks['float32']:.0f}, "
            f"tf32 {peaks['tf32']:.0f}, bf16 {peaks['bfloat16']:.0f} GFLOP/s; "
            f"engine.autotune {not args.no_autotune}\n"
        )
    else:
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{platform.processor() or platform.machine()}; dense matmul fp32 "
            f"{peaks['float32']:.1f}, bf16 {peaks['bfloat16']:.1f} GFLOP/s\n"
        )
    rows: list[dict] = []
    mix: dict = {}
    if args.only != "gossip":
        print(
            f"{'model':15s} {'precision':9s} {'optimizer':9s} {'N':>6s} {'naive':>10s} "
            f"{'engine':>10s} {'speedup':>8s} {'GFLOP/s':>9s} {'%matmul':>7s}"
            f"   (node-steps/s, batch {BATCH}; %matmul in the row's precision)"
        )
        naive_up_to = 1000 if args.gpu else None
        rows = training_table(cases, args.seconds, peaks, device, naive_up_to, not args.no_autotune)
    if args.only != "training":
        mix = gossip(*((8, 4) if args.smoke else (256, 200)), args.seconds, device)
        print(
            f"\ngossip N={mix['nodes']} P={mix['params']:,} ({mix['x_megabytes']:.0f} MB), "
            f"6-regular MH: copy of X {mix['copy_ms']:.2f} ms, mixing {mix['mix_ms']:.2f} ms "
            f"({mix['mix_over_copy']:.2f}x copy), naive state-dict loop "
            f"{mix['naive_loop_ms']:.1f} ms ({mix['naive_over_mix']:.1f}x slower than mixing)"
        )
    report_targets(rows, mix)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "device": device,
                    "matmul_gflops": peaks["float32"],
                    "matmul_gflops_by_precision": peaks,
                    "training": rows,
                    "gossip": mix,
                },
                handle,
                indent=2,
            )


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
