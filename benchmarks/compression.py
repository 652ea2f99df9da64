"""What compression costs a round, and whether its messages weigh what the rules say.

For the MLP 784-200-10 at N = 1,000 and the GroupNorm LeNet at N = 256 (batch 32, one
local step, random 6-regular graph), prints the wall time of whole rounds
(``Simulation.step``) of each compressed variant and of uncompressed D-PSGD, the two
interleaved round by round in this run, each the median of its rounds, and their
ratio; and, for every compressor, the bytes of a message as the ledger counted them
against its documented rule (docs/compression.md), payload plus the 32-byte header.

Usage:
    python benchmarks/compression.py               # both cases (a few minutes on 2 cores)
    python benchmarks/compression.py --only mlp    # one case
    python benchmarks/compression.py --smoke       # tiny sizes: checks the script runs
    python benchmarks/compression.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import tune_allocator

TOP_1 = "{name: top_k, ratio: 0.01}"
VARIANTS = {  # name -> protocol section
    "D-PSGD": "dpsgd",
    "D-PSGD top-1% (naive)": f"{{name: dpsgd, compression: {TOP_1}}}",
    "CHOCO top-1%": f"{{name: choco, compression: {TOP_1}}}",
    "CHOCO top-1% + EF": (
        "{name: choco, compression: {name: top_k, ratio: 0.01, error_feedback: true}}"
    ),
    "CHOCO sign": "{name: choco, compression: sign}",
}
CASES = {  # name -> (model section, input shape, nodes)
    "mlp": ({"name": "mlp", "hidden": [200]}, [784], 1000),
    "lenet": ({"name": "lenet"}, [3, 32, 32], 256),
}
RULES = ["none", TOP_1, "{name: random_k, ratio: 0.01}", "qsgd", "sign", "power"]


def build(model: dict, shape: list[int], nodes: int, protocol: str) -> Simulation:
    config = load_config(
        {
            "nodes": nodes,
            "rounds": 1000,
            "device": "cpu",
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "batch_size": 32,
                "synthetic": {"samples": max(nodes * 40, 4000), "shape": shape},
            },
            "model": model,
            "optimizer": {"lr": 0.01},
            "topology": {"kind": "regular", "degree": 6},
            "eval_every": 1000,
        },
        [f"protocol={protocol}"],
    )
    return Simulation.build(config)


def round_times(case: str, rounds: int, smoke: bool) -> list[dict]:
    """Each compressed variant against uncompressed D-PSGD, the two interleaved round by
    round (two populations in memory at a time: five 1,000-node ones would crowd 24 GB)."""
    model, shape, nodes = CASES[case]
    if smoke:
        model, shape, nodes = {"name": "mlp", "hidden": [8]}, [16], 12
    rows = []
    for name, protocol in VARIANTS.items():
        if name == "D-PSGD":
            continue
        sims = {
            "D-PSGD": build(model, shape, nodes, "dpsgd"),
            name: build(model, shape, nodes, protocol),
        }
        for sim in sims.values():
            sim.step(0)  # warm up
        times: dict[str, list[float]] = {label: [] for label in sims}
        for t in range(1, rounds + 1):  # interleaved: the machine's state hits both
            for label, sim in sims.items():
                start = time.perf_counter()
                sim.step(t)
                times[label].append(time.perf_counter() - start)
        reference, median = (statistics.median(times[label]) for label in sims)
        rows.append(
            {
                "case": case,
                "nodes": nodes,
                "variant": name,
                "round_s": median,
                "uncompressed_round_s": reference,
                "over_uncompressed": median / reference,
            }
        )
        print(
            f"  {case:5s} N={nodes:<5d} {name:24s} {median:8.3f} s against {reference:.3f} s: "
            f"{median / reference:5.2f}x",
            flush=True,
        )
        del sims
    return rows


def byte_rules(smoke: bool) -> list[dict]:
    """Bytes per message from the ledger against each compressor's rule."""
    model, shape, nodes = ({"name": "mlp", "hidden": [8]}, [16], 12) if smoke else CASES["mlp"]
    rows = []
    for compression in RULES:
        sim = build(model, shape, min(nodes, 64), f"{{name: dpsgd, compression: {compression}}}")
        sim.step(0)
        totals = sim.ledger.totals()
        measured = totals["bytes_sent"] / totals["messages"]
        rule = sim.network.encoder.compressor.payload_bytes() + 32
        rows.append(
            {
                "compression": compression,
                "measured": measured,
                "rule": rule,
                "relative_error": abs(measured - rule) / rule,
            }
        )
        print(
            f"  {compression:28s} {measured:12,.0f} bytes a message; rule {rule:12,d}", flush=True
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=list(CASES), help="one case")
    parser.add_argument("--rounds", type=int, default=5, help="rounds measured per variant")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    tune_allocator()
    rounds = 2 if args.smoke else args.rounds
    print("round wall time, median of interleaved rounds, and against uncompressed D-PSGD:")
    rows = []
    for case in [args.only] if args.only else list(CASES):
        rows += round_times(case, rounds, args.smoke)
    print("\nbytes of one message (ledger) against the documented rule:")
    rules = byte_rules(args.smoke)
    if args.json:
        args.json.write_text(json.dumps({"rounds": rows, "bytes": rules}, indent=2))


if __name__ == "__main__":
    main()
