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
    # On CUDA a rank's share is checked against its GPU's free memory (one GPU per
    # rank; unknown without a GPU here), the dataset included: a run moves it there.
    # On the CPU the ranks started by --ranks share this machine's memory.
    available = memory_plan.gpu_free_bytes(device) if on_gpu else memory_plan.available_bytes()

    def needed(plan: memory_plan.MemoryPlan) -> int:
        held = plan.total - plan.terms["process"]
        return held if on_gpu else (held - plan.terms["data"]) * ranks

    # The parameters and optimizer state alone, from the parameter count: a model that
    # cannot fit is planned without building it or reading the data.
    memory = memory_plan.outline_for_config(config, ranks)
    if memory is None or available is None or needed(memory) <= available:
        memory = memory_plan.plan_for_config(config, ranks, device)
    largest, _ = memory.largest
    plan: dict[str, Any] = {
        "nodes": config.nodes,
        "ranks": ranks,
        "memory_per_rank": dict(memory.terms),
        "memory_total": memory.total,
        "memory_available": available,
        "memory_of": "gpu" if on_gpu else "host",
        "fits": available is None or needed(memory) <= available,
        "largest": largest,
        "advice": memory.advice(),
    }
    if probe and plan["fits"] and ranks == 1:
        plan.update(_probe(config))
        plan["evaluation_advice"] = evaluation_advice(plan, config)
    return plan


ADVISE_ABOVE = 0.2  # share of the run spent evaluating above which plan advises sampling
ADVISED_SHARE = 0.1  # what the advice aims at


def evaluation_advice(probe: dict[str, Any], config: Config) -> str | None:
    """What brings a run that spends more than ``ADVISE_ABOVE`` of its time evaluating
    down to ``ADVISED_SHARE``, from the probe's times (None below it).

    Fewer nodes first (``eval.nodes``: their models are close, so a sample of them
    errs least; docs/outputs.md), then fewer evaluations (``eval_every``). An
    evaluation's time is taken as proportional to the nodes it measures (it also
    measures the average model, so this overstates a sampled one a little). The final
    evaluation (every node, the whole test set) is kept: where it alone takes more
    than the aim, the evaluations before it are brought to ``ADVISED_SHARE`` of the
    training time, and once they are, only the final one is reported.
    """
    if probe["evaluating_share"] <= ADVISE_ABOVE:
        return None
    training = config.rounds * probe["round_seconds"]
    final = probe["final_evaluation_seconds"]
    final_share = final / (training + final)
    # evaluating <= share x run  <=>  the evaluations before the last <= budget
    aim = f"about {ADVISED_SHARE:.0%} of the run evaluating"
    budget = ADVISED_SHARE / (1 - ADVISED_SHARE) * training - final
    if budget <= 0:
        budget = ADVISED_SHARE * training
        aim = (
            f"the evaluations before the last at about {ADVISED_SHARE:.0%} of the training "
            f"time; the last alone is {final_share:.0%} of the run"
        )
    others = probe["evaluations"] - 1
    measured = probe["evaluation_nodes"]  # nodes an evaluation measures now
    per_node = probe["evaluation_seconds"] / measured  # one node, one evaluation
    if others * probe["evaluation_seconds"] <= budget:  # sampling cannot gain more
        return (
            f"nothing to sample: the last evaluation (every node, the whole test set) "
            f"alone is {final_share:.0%} of the run"
        )
    nodes = int(budget / (others * per_node))
    if config.nodes > 2 and nodes >= 2:  # eval.nodes: at least 2
        return f"--set eval.nodes={nodes} ({aim})"
    sampled = 2 if config.nodes > 2 else measured
    fewer = "--set eval.nodes=2 " if config.nodes > 2 else ""
    allowed = int(budget / (sampled * per_node))  # evaluations besides the last
    if allowed < 1:
        return f"{fewer}--set eval_every={config.rounds} --set eval.initial=false ({aim})"
    every = -(-config.rounds // allowed)  # with the initial one, at most `allowed`
    return f"{fewer}--set eval_every={every} ({aim})"


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
    measured_nodes = int(nodes.sum()) if nodes is not None else config.nodes
    measured = measured_nodes * (len(test[1]) if test is not None else len(sim.dataset.y_test))
    final_s = evaluation_s * config.nodes * len(sim.dataset.y_test) / measured
    evaluations = config.rounds // config.eval_every + (1 if config.eval.initial else 0)
    if config.rounds % config.eval_every:
        evaluations += 1  # the last round is always evaluated
    run_s = config.rounds * round_s + (evaluations - 1) * evaluation_s + final_s
    return {
        "round_seconds": round_s,
        "evaluation_seconds": evaluation_s,
        "evaluation_nodes": measured_nodes,
        "final_evaluation_seconds": final_s,
        "evaluations": evaluations,
        "run_seconds": run_s,
        "evaluating_share": ((evaluations - 1) * evaluation_s + final_s) / run_s,
    }
