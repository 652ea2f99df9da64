"""Where a round's time goes: whole D-PSGD rounds against their parts.

For the MLP 784-200-10 (batch 32, one local step, random 6-regular graph) at several
population sizes, prints the wall time of a whole round (``Simulation.step``:
training, gossip, the ledger and the round's bookkeeping), of training alone, of
the gossip step alone and of one copy of the parameters X (reading and writing X
once: the floor of any gossip pass over memory), each the median over a few rounds
measured interleaved in this run, and the round's rate against training alone.

Usage:
    python benchmarks/round.py                 # N = 256, 1,000 and 10,000 (about 2 minutes)
    python benchmarks/round.py --nodes 512     # other sizes
    python benchmarks/round.py --huge-pages both  # also with 4 kB pages (the effect of THP)
    python benchmarks/round.py --smoke         # tiny sizes: checks the script runs
    python benchmarks/round.py --device cuda --nodes 1000 10000 100000   # on a GPU
    python benchmarks/round.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from gossamer.config import load_config
from gossamer.sim import Simulation, stacked
from gossamer.sim.engine import tune_allocator


def measure(
    nodes: int, hidden: int, features: int, rounds: int, huge_pages: bool, device: str = "cpu"
) -> dict:
    stacked.HUGE_PAGES = huge_pages
    per_node = 64 if nodes <= 10_000 else 10  # generating samples is set-up, not the measure
    config = load_config(
        {
            "nodes": nodes,
            "rounds": 1000,
            "device": device,
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": 32,
                "synthetic": {"samples": max(nodes * per_node, 20_000), "shape": [features]},
            },
            "model": {"name": "mlp", "hidden": [hidden]},
            "optimizer": {"lr": 0.01},
            "topology": {"kind": "regular", "degree": 6},
        }
    )
    sim = Simulation.build(config)
    sim.step(0)  # warm up

    def sync() -> None:  # a CUDA call returns before its kernels end
        if device == "cuda":
            torch.cuda.synchronize()

    # Interleaved and summarized by the median: this machine's memory bandwidth halves
    # for seconds at a time (other tenants), which would otherwise land on one part.
    parts: dict[str, list[float]] = {"round": [], "training": [], "gossip": [], "copy": []}
    params = sim.network.params.blocks
    for t in range(1, rounds + 1):
        sync()
        start = time.perf_counter()
        sim.step(t)
        sync()
        parts["round"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sim.population.train(1, round=t)
        sync()
        parts["training"].append(time.perf_counter() - start)
        start = time.perf_counter()
        sim.network.gossip()
        sync()
        parts["gossip"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for block in params:  # reading and writing X once: the floor of any gossip pass
            block.mul_(1.0)
        sync()
        parts["copy"].append(time.perf_counter() - start)
    row = {"nodes": nodes, "device": device, "huge_pages": huge_pages}
    row.update({f"{k}_s": statistics.median(v) for k, v in parts.items()})
    row["round_node_steps_per_s"] = nodes / row["round_s"]
    row["training_node_steps_per_s"] = nodes / row["training_s"]
    row["round_over_training"] = row["training_s"] / row["round_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, nargs="*", default=[256, 1000, 10_000])
    parser.add_argument(
        "--huge-pages",
        choices=["on", "off", "both"],
        default="on",
        help="back the population with transparent huge pages (gossamer's default: on)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--rounds", type=int, default=7, help="rounds measured per size")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    if args.device == "cpu":
        tune_allocator()
    rows = []
    sizes = [16] if args.smoke else args.nodes
    pages = {"on": [True], "off": [False], "both": [True, False]}[args.huge_pages]
    for nodes in sizes:
        for huge_pages in pages:
            hidden, features = (8, 16) if args.smoke else (200, 784)
            rounds = 2 if args.smoke else args.rounds
            row = measure(nodes, hidden, features, rounds, huge_pages, args.device)
            rows.append(row)
            shown = (f"{k} {v}" if isinstance(v, str) else f"{k} {v:,.4g}" for k, v in row.items())
            print("  " + ", ".join(shown), flush=True)
            if args.device == "cuda":
                torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows}, indent=2))


if __name__ == "__main__":
    main()
