"""What an aggregator other than the mean costs a gossip round and a coordinator's sync.

For the MLP 784-200-10 at N = 1,000 (batch 32, one local step, random 6-regular
graph), prints the wall time of whole D-PSGD rounds (``Simulation.step``) and of the
combining step alone (``network.gossip``, and for periodic averaging with period 1
the upload and aggregate) for each aggregator, interleaved round by round with the
mean in this run, each the median of its rounds, and the ratio to the mean.

Usage:
    python benchmarks/aggregation.py               # a minute or two on 2 cores
    python benchmarks/aggregation.py --smoke       # tiny sizes: checks the script runs
    python benchmarks/aggregation.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from compression import build
from gossamer.sim.engine import tune_allocator

AGGREGATORS = {"mean": "mean", "median": "median", "trimmed mean 0.2": "{name: trimmed_mean}"}
PROTOCOLS = {"D-PSGD": "dpsgd", "periodic": "{name: periodic, period: 1}"}


def measure(protocol: str, rounds: int, smoke: bool) -> list[dict]:
    """Each aggregator's rounds and combining steps, interleaved with the others'."""
    model, shape, nodes = ({"name": "mlp", "hidden": [200]}, [784], 1000)
    if smoke:
        model, shape, nodes = {"name": "mlp", "hidden": [8]}, [16], 12
    sims = {}
    for label, section in AGGREGATORS.items():
        base = PROTOCOLS[protocol]
        inner = base[1:-1] + ", " if base.startswith("{") else f"name: {base}, "
        sims[label] = build(model, shape, nodes, f"{{{inner}aggregator: {section}}}")
        sims[label].step(0)  # warm up
    rounds_s = {label: [] for label in sims}
    combine_s = {label: [] for label in sims}
    for t in range(1, rounds + 1):
        for label, sim in sims.items():
            start = time.perf_counter()
            sim.step(t)
            rounds_s[label].append(time.perf_counter() - start)
            start = time.perf_counter()
            sim.protocol.communicate(t)  # the combining step again, alone
            combine_s[label].append(time.perf_counter() - start)
    mean_round = statistics.median(rounds_s["mean"])
    mean_combine = statistics.median(combine_s["mean"])
    rows = []
    for label in sims:
        round_s, step_s = statistics.median(rounds_s[label]), statistics.median(combine_s[label])
        rows.append(
            {
                "protocol": protocol,
                "nodes": nodes,
                "aggregator": label,
                "round_s": round_s,
                "combine_s": step_s,
                "round_over_mean": round_s / mean_round,
                "combine_over_mean": step_s / mean_combine,
            }
        )
        print(
            f"  {protocol:8s} N={nodes:<5d} {label:17s} round {round_s:7.3f} s "
            f"({round_s / mean_round:5.2f}x the mean's); combining {step_s:7.3f} s "
            f"({step_s / mean_combine:6.2f}x)",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds measured per aggregator")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    tune_allocator()
    rounds = 2 if args.smoke else args.rounds
    print("wall time, median of interleaved rounds, and against the mean:")
    rows = []
    for protocol in PROTOCOLS:
        rows += measure(protocol, rounds, args.smoke)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
