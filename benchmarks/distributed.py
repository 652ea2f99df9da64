"""What sharding the nodes over ranks costs: bytes between ranks, gossip time, throughput.

Prints, measured in one run on this machine (ranks are processes of this machine,
joined by gloo over a file store):

1. **Bytes moved per mixing step**, halo exchange against all-gather, for the
   SkipTrain graph (random 6-regular), a 2-D torus and a ring of N = 256 nodes at
   R = 2, 4 and 8 ranks, for the MLP 784-200-10 (159,010 parameters, float32),
   counted from the plans every rank builds; and the **time of one mixing step**
   with each (the same ranks run both, interleaved, so the ratio compares like
   with like);
2. **node-steps per second** of whole D-PSGD rounds (training, gossip, ledger) at
   R = 1 and 2, for LeNet (CIFAR-10-sized inputs, N = 256, batch 32) and the MLP
   (N = 4,096, batch 32), and the peak memory (RSS) of each rank. On this 2-core
   machine two ranks share the cores one process had, so expect no speed-up: the
   point is the overhead;
3. **the largest MLP population**: measured bytes per node (peak RSS slope between
   two population sizes) and per rank (its intercept), and from them the largest N
   that fits R ranks on one machine of this memory, and on M machines.

Usage:
    python benchmarks/distributed.py            # everything (about 10 minutes on 2 cores)
    python benchmarks/distributed.py --smoke    # tiny sizes: checks the script runs
    python benchmarks/distributed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.shard import Halo, Shard
from gossamer.sim.topology import Mixer, build_topology

MLP_PARAMS = 784 * 200 + 200 + 200 * 10 + 10  # 159,010
GRAPHS = {
    "6-regular (SkipTrain)": {"kind": "regular", "degree": 6},
    "torus": {"kind": "torus"},
    "ring": {"kind": "ring"},
}


def spawn(worker, world: int, *args):
    """Run ``worker(rank, world, store, out, *args)`` on ``world`` ranks; rank 0's value."""
    folder = Path(tempfile.mkdtemp(prefix="gossamer-dist-bench-"))
    out = folder / "result.pkl"
    mp.spawn(worker, args=(world, str(folder / "store"), str(out), *args), nprocs=world)
    return pickle.loads(out.read_bytes())


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM on Linux (ru_maxrss carries over the
    high-water mark of the parent that forked the process)."""
    try:
        with open("/proc/self/status") as handle:
            return int(handle.read().split("VmHWM:")[1].split()[0]) * 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def join(rank: int, world: int, store: str) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)


def finish(rank: int, out: str, value) -> None:
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    if rank == 0:
        Path(out).write_bytes(pickle.dumps(values))
    dist.destroy_process_group()


# ------------------------------------------------------------------ 1. halo vs all-gather


def planned_bytes(topology, nodes: int, world: int, params: int) -> tuple[int, int]:
    """(halo, all-gather) bytes received over all ranks for one mixing step."""
    halo = gather = 0
    for rank in range(world):
        plan = Halo(Shard(nodes, rank, world), topology.rows, topology.cols, dense_share=2.0)
        halo += sum(plan.recv_counts) * params * 4
        lo, hi = plan.shard.bounds[rank]
        gather += (nodes - (hi - lo)) * params * 4
    return halo, gather


def _mixing_worker(rank, world, store, out, topology_config, nodes, params, repeats):
    join(rank, world, store)
    topology = build_topology(load_config(topology_config).topology, nodes, 0)
    shard = Shard(nodes, rank, world)
    halo = Mixer(topology, torch.device("cpu"), nodes, shard, dense_share=2.0)  # never dense
    gather = Mixer(topology, torch.device("cpu"), nodes, shard, all_rows=True)
    x = torch.randn(shard.local_nodes, params)
    times = {"halo": [], "all-gather": []}
    for mixer in (halo, gather):  # warm up
        mixer.apply_([x])
    for _ in range(repeats):
        for name, mixer in (("halo", halo), ("all-gather", gather)):
            dist.barrier()
            start = time.perf_counter()
            mixer.apply_([x])
            dist.barrier()
            times[name].append(time.perf_counter() - start)
    finish(rank, out, {k: statistics.median(v) for k, v in times.items()})


def mixing(nodes: int, params: int, worlds: list[int], repeats: int, graphs=GRAPHS) -> list[dict]:
    rows = []
    for name, graph in graphs.items():
        config = {"nodes": nodes, "topology": graph}
        topology = build_topology(load_config(config).topology, nodes, 0)
        for world in worlds:
            halo_bytes, gather_bytes = planned_bytes(topology, nodes, world, params)
            timed = spawn(_mixing_worker, world, config, nodes, params, repeats)[0]
            rows.append(
                {
                    "graph": name,
                    "ranks": world,
                    "halo_MB": halo_bytes / 1e6,
                    "all_gather_MB": gather_bytes / 1e6,
                    "bytes_ratio": halo_bytes / gather_bytes,
                    "halo_ms": timed["halo"] * 1e3,
                    "all_gather_ms": timed["all-gather"] * 1e3,
                    "time_ratio": timed["halo"] / timed["all-gather"],
                }
            )
            print_row(rows[-1])
    return rows


# ------------------------------------------------------------------ 2. whole rounds


def round_config(model: str, nodes: int) -> dict:
    if model == "lenet":
        data = {"samples": 32 * 64, "shape": [3, 32, 32], "classes": 10}
        model_section = {"name": "lenet"}
    else:
        data = {"samples": nodes * 64, "shape": [784], "classes": 10}
        model_section = {"name": "mlp", "hidden": [200]}
    return {
        "nodes": nodes,
        "rounds": 1000,
        "device": "cpu",
        "data": {"dataset": "synthetic", "partition": "iid", "batch_size": 32, "synthetic": data},
        "model": model_section,
        "optimizer": {"lr": 0.01},
        "topology": {"kind": "regular", "degree": 6},
    }


def _round_worker(rank, world, store, out, config, rounds):
    join(rank, world, store)
    sim = Simulation.build(load_config(config))
    sim.step(0)  # warm up
    dist.barrier()
    start = time.perf_counter()
    for t in range(1, rounds + 1):
        sim.step(t)
    dist.barrier()
    seconds = (time.perf_counter() - start) / rounds
    finish(rank, out, {"round_s": seconds, "peak_rss_GB": peak_rss() / 1e9})


def _round_single(rank, world, store, out, config, rounds):
    """The R = 1 reference, in a fresh process too (its peak memory is its own)."""
    torch.set_num_threads(os.cpu_count() or 1)
    sim = Simulation.build(load_config(config))
    sim.step(0)
    start = time.perf_counter()
    for t in range(1, rounds + 1):
        sim.step(t)
    seconds = (time.perf_counter() - start) / rounds
    Path(out).write_bytes(pickle.dumps([{"round_s": seconds, "peak_rss_GB": peak_rss() / 1e9}]))


def rounds_per_rank(model: str, nodes: int, rounds: int) -> list[dict]:
    config = round_config(model, nodes)
    rows = []
    for world in (1, 2):
        worker = _round_single if world == 1 else _round_worker
        ranks = spawn(worker, world, config, rounds)
        seconds = max(r["round_s"] for r in ranks)
        rows.append(
            {
                "model": model,
                "nodes": nodes,
                "ranks": world,
                "node_steps_per_s": nodes / seconds,
                "round_s": seconds,
                "peak_rss_GB_per_rank": [round(r["peak_rss_GB"], 3) for r in ranks],
            }
        )
        print_row(rows[-1])
    rows[1]["vs_one_process"] = rows[1]["node_steps_per_s"] / rows[0]["node_steps_per_s"]
    print(f"  2 ranks / 1 process: {rows[1]['vs_one_process']:.2f}x node-steps/s")
    return rows


# ------------------------------------------------------------------ 3. the largest population


def largest(sizes: tuple[int, int], world: int, machine_gb: float) -> dict:
    """Peak RSS per rank at two MLP population sizes; bytes per node from the slope."""
    peaks = []
    for nodes in sizes:
        config = round_config("mlp", nodes)
        config["optimizer"] = {"lr": 0.01, "momentum": 0.9}  # the paper's SGD state
        ranks = spawn(_round_worker, world, config, 1)
        peaks.append(max(r["peak_rss_GB"] for r in ranks) * 1e9)
    per_node = (peaks[1] - peaks[0]) / ((sizes[1] - sizes[0]) / world)  # bytes per node
    per_rank = peaks[0] - per_node * sizes[0] / world
    machine = machine_gb * 1e9
    one_machine = int((machine - world * per_rank) / per_node)
    result = {
        "ranks_per_machine": world,
        "sizes": list(sizes),
        "peak_rss_GB": [p / 1e9 for p in peaks],
        "MB_per_node": per_node / 1e6,
        "GB_per_rank_fixed": per_rank / 1e9,
        "machine_GB": machine_gb,
        "largest_nodes_one_machine": one_machine,
        "machines_for_100k_nodes": int(np.ceil(100_000 / max(one_machine, 1))),
    }
    print_row(result)
    return result


def print_row(row: dict) -> None:
    def show(value):
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    print("  " + ", ".join(f"{k} {show(v)}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    results: dict = {"cores": os.cpu_count(), "memory_GB": memory_gb}
    if args.smoke:
        print("1. mixing step, halo vs all-gather (smoke)")
        results["mixing"] = mixing(16, 100, [2], repeats=2, graphs={"ring": GRAPHS["ring"]})
        print("2. whole rounds (smoke)")
        results["rounds"] = rounds_per_rank("mlp", 16, 2)
        print("3. largest population (smoke)")
        results["largest"] = largest((16, 32), 2, memory_gb)
    else:
        print(f"1. one mixing step, N = 256, MLP ({MLP_PARAMS:,} parameters)")
        results["mixing"] = mixing(256, MLP_PARAMS, [2, 4, 8], repeats=5)
        print("2. whole D-PSGD rounds")
        results["rounds"] = rounds_per_rank("lenet", 256, 2) + rounds_per_rank("mlp", 4096, 3)
        print("3. largest MLP population (momentum SGD), 2 ranks")
        results["largest"] = largest((2048, 6144), 2, memory_gb)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
