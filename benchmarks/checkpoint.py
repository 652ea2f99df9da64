"""What checkpoints cost: size, save and load time against a round and torch.save.

Prints, measured in one run on this machine, for N nodes training the MLP 784-200-10
with momentum (D-PSGD on a random 6-regular graph, batch 32):

1. the checkpoint's size and the time to save it (safetensors format, written to a
   temporary file, fsynced and renamed) and to load it into a built simulation;
2. the save time against ``torch.save`` of the same tensors into the same folder
   (pickle-based, what a checkpoint would otherwise be) and against one round;
3. the overhead of the default ``checkpoint_every: auto`` (ten checkpoints a run)
   on a run of R rounds: 10 x save / (R x round).

Save and torch.save are timed interleaved (one call of each in turn) and each figure
is the median of its calls.

Usage:
    python benchmarks/checkpoint.py                # N = 64, 256
    python benchmarks/checkpoint.py --nodes 1024   # other sizes
    python benchmarks/checkpoint.py --smoke        # tiny sizes: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from engine import interleaved  # the sibling benchmark's interleaved timer
from gossamer.config import config_hash, load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator
from gossamer.workflow import checkpoint


def build(nodes: int, hidden: int, features: int) -> Simulation:
    config = load_config(
        {
            "nodes": nodes,
            "rounds": 100_000,
            "device": "cpu",
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": 32,
                "synthetic": {"samples": nodes * 64, "shape": [features], "classes": 10},
            },
            "model": {"name": "mlp", "hidden": [hidden]},
            "optimizer": {"lr": 0.05, "momentum": 0.9},
            "topology": {"kind": "regular", "degree": 6},
        }
    )
    return Simulation.build(config)


def measure(nodes: int, hidden: int, features: int, seconds: float, rounds: int) -> dict:
    sim = build(nodes, hidden, features)
    for t in range(3):
        sim.step(t)
    folder = Path(tempfile.mkdtemp(prefix="gossamer-bench-"))
    path = folder / checkpoint.CHECKPOINT
    state = sim.population.state
    tensors = {f"params.{i}": b for i, b in enumerate(state.params.blocks)}
    tensors.update({f"momentum.{i}": b for i, b in enumerate(state.optimizer.momentum.blocks)})
    header = {"config_hash": config_hash(sim.config), "next_round": sim.next_round}

    def save():
        checkpoint.save(path, {"simulation": sim.state_dict(), "elapsed": 0.0}, header)

    def load():
        state, _ = checkpoint.load(path, other.config, other.row_ranges())
        other.load_state_dict(state["simulation"])

    def pickled():
        with open(folder / "torch.pt", "wb") as handle:
            torch.save(tensors, handle)
            handle.flush()
            os.fsync(handle.fileno())

    step = iter(range(3, 10**9))
    times = interleaved(
        {
            "save": save,
            "torch_save": pickled,
            "round": lambda: sim.step(next(step)),
        },
        seconds,
    )
    other = build(nodes, hidden, features)
    load = interleaved({"load": load}, seconds)["load"]
    size = path.stat().st_size
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()
    return {
        "nodes": nodes,
        "parameters": sim.model.num_params,
        "checkpoint_mb": size / 1e6,
        "save_s": times["save"],
        "load_s": load,
        "torch_save_s": times["torch_save"],
        "round_s": times["round"],
        "save_over_torch_save": times["save"] / times["torch_save"],
        "save_over_round": times["save"] / times["round"],
        "auto_overhead": 10 * times["save"] / (rounds * times["round"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rounds", type=int, default=1000, help="run length for the overhead")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per figure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args()
    tune_allocator()
    torch.manual_seed(0)
    hidden, features = (200, 784) if not args.smoke else (8, 16)
    sizes = args.nodes if not args.smoke else [8]
    seconds = args.seconds if not args.smoke else 0.05
    rows = []
    print(
        f"{'N':>5} {'params':>8} {'MB':>8} {'save s':>8} {'load s':>8} {'torch.save s':>12} "
        f"{'round s':>8} {'save/torch.save':>15} {'save/round':>10} {'auto overhead':>13}"
    )
    for nodes in sizes:
        row = measure(nodes, hidden, features, seconds, args.rounds)
        rows.append(row)
        print(
            f"{row['nodes']:>5} {row['parameters']:>8,} {row['checkpoint_mb']:>8.1f} "
            f"{row['save_s']:>8.3f} {row['load_s']:>8.3f} {row['torch_save_s']:>12.3f} "
            f"{row['round_s']:>8.4f} {row['save_over_torch_save']:>15.2f} "
            f"{row['save_over_round']:>10.1f} {row['auto_overhead']:>12.2%}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
