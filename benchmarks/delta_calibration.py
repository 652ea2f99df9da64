"""Does the calibrated delta give the violation rate asked for?

For the dynamic averaging reproduction's setting (50 nodes learning online from a
synthetic 10-class stream, a check every round; ``examples/dynamic_averaging.yaml``)
and for the quickstart's digits (32 nodes, a check every 2 rounds), and for each
target violation rate, this calibrates delta (``gossamer.suggest_delta``), runs
dynamic averaging with it, and prints:

- the realized violation rate: the share of checks at which some node violated;
- the ratio of realized to target (the aim: within a factor of 2);
- full and partial synchronizations, and the bytes against periodic averaging with
  the same period;
- for the drifting stream, how violations, partial and full syncs fall over the run
  (in quarters; the concept changes at round 500).

Usage:
    python benchmarks/delta_calibration.py           # about 2 minutes on 2 cores
    python benchmarks/delta_calibration.py --smoke
    python benchmarks/delta_calibration.py --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

import gossamer
from gossamer.config import load_config

ROOT = Path(__file__).parents[1]


def settings(smoke: bool) -> dict[str, dict]:
    stream = yaml.safe_load((ROOT / "examples" / "dynamic_averaging.yaml").read_text())
    stream.pop("variants")
    digits = {
        "seed": 0,
        "nodes": 32,
        "rounds": 400,
        "eval_every": 50,
        "device": "cpu",
        "data": {"dataset": "digits", "partition": "dirichlet", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [64]},
        "optimizer": {"lr": 0.1},
        "protocol": {"name": "dynamic", "period": 2},
    }
    stream["protocol"] = {"name": "dynamic", "period": 1}
    if smoke:
        stream.update(rounds=40, eval_every=20)
        stream["data"]["drift"]["at_rounds"] = [20]
        digits.update(rounds=40, eval_every=20)
    return {"drifting stream (50 nodes)": stream, "digits (32 nodes)": digits}


def measure(name: str, base: dict, target: float, smoke: bool) -> dict:
    suggestion = gossamer.suggest_delta(base, periods=2 if smoke else 5, violation_rate=target)
    delta = suggestion["suggested_delta"]
    config = load_config(base, [f"protocol.delta={delta}"])
    result = gossamer.run(config)
    period = config.protocol.period
    rounds = result.rounds
    checks = (np.arange(1, config.rounds + 1) % period) == 0
    violated = rounds["violations"][checks] > 0
    periodic = gossamer.run(load_config(base, [f"protocol={{name: periodic, period: {period}}}"]))
    quarters = np.array_split(np.arange(config.rounds), 4)
    return {
        "setting": name,
        "target": target,
        "delta": delta,
        "realized": float(violated.mean()),
        "realized_over_target": float(violated.mean() / target),
        "full_syncs": int(rounds["full_syncs"].sum()),
        "partial_syncs": int(rounds["partial_syncs"].sum()),
        "bytes_vs_periodic": result.summary["totals"]["bytes_sent"]
        / periodic.summary["totals"]["bytes_sent"],
        "violations_by_quarter": [int(rounds["violations"][q].sum()) for q in quarters],
        "full_syncs_by_quarter": [int(rounds["full_syncs"][q].sum()) for q in quarters],
        "partial_syncs_by_quarter": [int(rounds["partial_syncs"][q].sum()) for q in quarters],
        "final_accuracy": float(result.metrics["test_accuracy_mean"][-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    targets = [0.2] if args.smoke else [0.5, 0.2, 0.1, 0.05]
    rows = []
    for name, base in settings(args.smoke).items():
        for target in targets:
            row = measure(name, base, target, args.smoke)
            rows.append(row)
            print(
                "  "
                + ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
            )
    if args.json:
        args.json.write_text(json.dumps({"calibration": rows}, indent=2))


if __name__ == "__main__":
    main()
