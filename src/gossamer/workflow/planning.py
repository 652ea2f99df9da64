"""``gossamer plan``: what a run will take, before it runs.

Memory comes from the estimate of ``gossamer.sim.memory`` (per rank, by part, against
what this machine has available). Time comes from a probe: the run is built and two
of its rounds run, and the second is timed (the first warms up kernels and caches);
one evaluation as configured (``eval:``) and the final one (every node, the whole
test set) are timed or scaled from it. The estimate of the whole run is then

    rounds x round + (evaluations - 1) x evaluation + final evaluation.

A round of a protocol that changes from round to round (SkipTrain's training and
synchronization rounds, dynamic averaging's synchronizations) is one sample of its
cost: the probe says what two rounds cost, not their average over a run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gossamer.config import Config, comparison_base, load_config
from gossamer.sim import Simulation
from gossamer.sim import memory as memory_plan  # looked up when called (tests replace them)


def plan_run(
    config: Config | dict | str | Path | None = None,
    *,
    overrides: Sequence[str] = (),
    ranks: int = 1,
    probe: bool = True,
) -> dict[str, Any]:
    """The memory a run of ``config`` needs per rank (by part), what is available,
    and, with ``probe`` (on one rank, when it fits), the seconds a round and an
    evaluation take and an estimate of the whole run."""
    config = load_config(comparison_base(config), overrides)
    on_gpu = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if on_gpu else "cpu")  # as the run resolves it
    memory = memory_plan.plan_for_config(config, ranks, device)
    # On CUDA a rank's share is checked against its GPU's free memory (one GPU per
    # rank; unknown without a GPU here), the dataset included: a run moves it there.
    # On the CPU the ranks started by --ranks share this machine's memory.
    available = memory_plan.gpu_free_bytes(device) if on_gpu else memory_plan.available_bytes()
    needed = memory.total - memory.terms["process"]
    if not on_gpu:
        needed = (needed - memory.terms["data"]) * ranks
    largest, _ = memory.largest
    plan: dict[str, Any] = {
        "nodes": config.nodes,
        "ranks": ranks,
        "memory_per_rank": dict(memory.terms),
        "memory_total": memory.total,
        "memory_available": available,
        "memory_of": "gpu" if on_gpu else "host",
        "fits": available is None or needed <= available,
        "largest": largest,
        "advice": memory.advice(),
    }
    if probe and plan["fits"] and ranks == 1:
        plan.update(_probe(config))
    return plan


def _probe(config: Config) -> dict[str, float]:
    sim = Simulation.build(config)
    seconds = []
    for t in range(min(2, config.rounds)):
        start = time.perf_counter()
        sim.step(t)
        seconds.append(time.perf_counter() - start)
    round_s = seconds[-1]
    nodes, test = sim.evaluation_sample() if config.rounds > 2 else (None, None)
    start = time.perf_counter()
    sim.population.evaluate(nodes=nodes, test=test)
    sim.population.evaluate(sim.population.mean(), test=test)
    evaluation_s = time.perf_counter() - start
    measured = (int(nodes.sum()) if nodes is not None else config.nodes) * (
        len(test[1]) if test is not None else len(sim.dataset.y_test)
    )
    final_s = evaluation_s * config.nodes * len(sim.dataset.y_test) / measured
    evaluations = config.rounds // config.eval_every + (1 if config.eval.initial else 0)
    if config.rounds % config.eval_every:
        evaluations += 1  # the last round is always evaluated
    run_s = config.rounds * round_s + (evaluations - 1) * evaluation_s + final_s
    return {
        "round_seconds": round_s,
        "evaluation_seconds": evaluation_s,
        "final_evaluation_seconds": final_s,
        "evaluations": evaluations,
        "run_seconds": run_s,
        "evaluating_share": ((evaluations - 1) * evaluation_s + final_s) / run_s,
    }
