"""Per-round cost of the network conditions (churn, message loss) against an ideal network.

Prints, measured in one run on this machine, the wall time of one D-PSGD round (local
training and a gossip step) and of the gossip step alone, on a random 6-regular graph
with Metropolis-Hastings weights, for each condition:

- ideal: everyone online, every message delivered (the ideal-network code path);
- churn: 30% of the nodes offline per round (bernoulli);
- loss: 10% of the messages lost;
- churn + loss, and Markov sessions (mean 10 rounds online, 5 offline) with loss;
- time-varying graphs: a fresh 6-regular graph every round, Epidemic Learning with
  s = 6, one-peer exponential graphs.

Under a condition the network draws the round's online mask and one keyed number per
message, and recomputes the mixing weights on the live subgraph (a new sparse matrix
per round); the ratio to the ideal round is that overhead. Conditions are timed
interleaved, so ratios compare calls made under the same machine conditions.

Usage:
    python benchmarks/network.py                 # N = 256 and 4,096
    python benchmarks/network.py --nodes 1024    # other sizes
    python benchmarks/network.py --smoke         # tiny sizes: checks the script runs
    python benchmarks/network.py --json out.json # also write the numbers
"""

from __future__ import annotations

import argparse
import itertools
import json

from engine import interleaved  # the sibling benchmark's interleaved timer
from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator

CHURN = {"kind": "bernoulli", "online": 0.7}
MARKOV = {"kind": "markov", "mean_online": 10, "mean_offline": 5}
REGULAR = {"kind": "regular", "degree": 6}
CONDITIONS = {  # name -> (network section, topology section)
    "ideal": ({}, REGULAR),
    "churn 30%": ({"availability": CHURN}, REGULAR),
    "loss 10%": ({"delivery": 0.9}, REGULAR),
    "churn 30% + loss 10%": ({"availability": CHURN, "delivery": 0.9}, REGULAR),
    "markov + loss 10%": ({"availability": MARKOV, "delivery": 0.9}, REGULAR),
    "resampled every round": ({}, {**REGULAR, "resample_every": 1}),
    "epidemic s=6": ({}, {"kind": "epidemic", "fanout": 6}),
    "one-peer exponential": ({}, {"kind": "one_peer_exponential"}),
}


def build(nodes: int, network: dict, topology: dict, hidden: int) -> Simulation:
    config = load_config(
        {
            "nodes": nodes,
            "device": "cpu",
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": 16,
                "synthetic": {"samples": max(4000, nodes * 20), "shape": [64], "classes": 10},
            },
            "model": {"name": "mlp", "hidden": [hidden]},
            "topology": topology,
            "network": network,
            "protocol": "dpsgd",
            "energy": {"enabled": False},
        }
    )
    return Simulation.build(config)


def measure(nodes: int, seconds: float, hidden: int) -> list[dict]:
    sims = {name: build(nodes, *sections, hidden) for name, sections in CONDITIONS.items()}
    rounds = {name: itertools.count() for name in sims}

    def round_of(name):
        return lambda: sims[name].step(next(rounds[name]))

    def gossip_of(name):
        sim = sims[name]

        def gossip():
            sim.network.begin_round(next(rounds[name]))
            sim.network.gossip()

        return gossip

    round_s = interleaved({name: round_of(name) for name in sims}, seconds)
    gossip_s = interleaved({name: gossip_of(name) for name in sims}, seconds)
    rows = []
    for name in sims:
        row = {
            "nodes": nodes,
            "parameters": sims[name].model.num_params,
            "condition": name,
            "round_ms": 1e3 * round_s[name],
            "round_over_ideal": round_s[name] / round_s["ideal"],
            "gossip_ms": 1e3 * gossip_s[name],
            "gossip_over_ideal": gossip_s[name] / gossip_s["ideal"],
        }
        rows.append(row)
        print(
            f"{nodes:6d} {name:22s} round {row['round_ms']:8.2f} ms "
            f"({row['round_over_ideal']:5.2f}x ideal)   gossip {row['gossip_ms']:8.2f} ms "
            f"({row['gossip_over_ideal']:5.2f}x ideal)",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[256, 4096])
    parser.add_argument("--hidden", type=int, default=64, help="MLP 64-<hidden>-10")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per figure")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script")
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.seconds, args.hidden = [16], 0.01, 8
    tune_allocator()
    rows = [row for n in args.nodes for row in measure(n, args.seconds, args.hidden)]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"network": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
