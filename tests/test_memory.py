"""Memory planning: the estimate by part, against hand counts and measured peak RSS;
a run that will not fit is refused before the population is allocated; gossamer plan."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import gossamer
from conftest import ROOT, small_config
from gossamer.cli.app import app
from gossamer.config import ConfigError, load_config
from gossamer.sim import memory
from gossamer.sim.memory import MemoryPlan, check_fits, estimate_memory
from gossamer.sim.models import build_model

MLP = {
    "nodes": 100,
    "device": "cpu",
    "data": {"dataset": "synthetic", "synthetic": {"samples": 1000, "shape": [784]}},
    "model": {"name": "mlp", "hidden": [200]},
}


def plan_of(overrides: list[str], ranks: int = 1) -> MemoryPlan:
    config = load_config(MLP, overrides)
    model = build_model(config.model, (784,), 10)
    assert model.num_params == 159_010  # 784 x 200 + 200 + 200 x 10 + 10
    return estimate_memory(config, model, 0, 10, torch.device("cpu"), ranks, 200)


def test_the_state_terms_count_parameters_by_hand():
    sgd = plan_of([])
    assert sgd.terms["parameters"] == 100 * 159_010 * 4
    assert sgd.terms["optimizer state"] == 0
    assert plan_of(["optimizer.momentum=0.9"]).terms["optimizer state"] == 100 * 159_010 * 4
    adam = plan_of(["optimizer=adam"]).terms["optimizer state"]
    assert adam == 2 * 100 * 159_010 * 4 + 100 * 8  # two moments and a step count a node
    amsgrad = plan_of(["optimizer=adam", "optimizer.amsgrad=true"]).terms["optimizer state"]
    assert amsgrad == 3 * 100 * 159_010 * 4 + 100 * 8
    gossip = plan_of(["protocol={name: dynamic_gossip}"]).terms["protocol"]
    assert gossip == 100 * 159_010 * 4  # the last-sent models
    lossy = plan_of(["protocol={name: dynamic_gossip}", "network.delivery=0.9"])
    assert lossy.terms["protocol"] == (100 + 100 * 4) * 159_010 * 4  # and a copy per edge
    assert plan_of([], ranks=4).terms["parameters"] == 25 * 159_010 * 4  # a rank's share


# The peak RSS of this process alone: VmHWM (ru_maxrss would carry over the
# high-water mark of the parent that forked it, here the test runner's).
PROBE = """
import json, sys
from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.memory import plan_memory
config = load_config(json.loads(sys.argv[1]))
sim = Simulation.build(config)
plan = plan_memory(config, sim.model, sim.dataset, sim.node_data, sim.population.device)
for t in range(2):
    sim.step(t)
sim.evaluate(0.0)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
peak = int(status[0]) * 1024
print(json.dumps({"peak": peak, "plan": plan.total}))
"""
CASES = {
    "mlp momentum, 1,536 nodes": {
        **MLP,
        "nodes": 1536,
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "batch_size": 32,
            "synthetic": {"samples": 16000, "shape": [784], "classes": 10},
        },
        "optimizer": {"lr": 0.01, "momentum": 0.9},
        "topology": {"kind": "regular", "degree": 6},
    },
    "cnn, 48 nodes": {
        "nodes": 48,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "batch_size": 32,
            "synthetic": {"samples": 6000, "shape": [1, 28, 28], "classes": 10},
        },
        "model": {"name": "cnn"},
        "topology": {"kind": "regular", "degree": 4},
    },
    "event-triggered gossip under loss, ring of 300": {
        "nodes": 300,
        "device": "cpu",
        "data": {"dataset": "digits", "partition": "iid", "batch_size": 16},
        "model": {"name": "mlp", "hidden": [64]},
        "protocol": {"name": "dynamic_gossip", "delta": 0.1},
        "network": {"delivery": 0.9},
        "topology": {"kind": "ring"},
    },
}


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("case", list(CASES))
def test_the_estimate_is_within_a_quarter_of_the_measured_peak(case):
    # A convolution network's peak varies between identical runs (1.02-1.47 GB here:
    # freed temporaries fragment the tuned allocator's heap differently each time), so
    # its estimate is held to the median of three runs; the others' to one run.
    probes = 3 if case.startswith("cnn") else 1
    measured = []
    for _ in range(probes):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps(CASES[case])],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            check=True,
        )
        measured.append(json.loads(done.stdout.strip().splitlines()[-1]))
    peak = sorted(m["peak"] for m in measured)[probes // 2]
    ratio = measured[0]["plan"] / peak
    assert 0.75 <= ratio <= 1.25, (case, measured)


def test_a_run_that_does_not_fit_is_refused_before_the_population(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)  # 1 MB left
    built = []
    monkeypatch.setattr(gossamer.sim.engine.Population, "__init__", lambda *a, **k: built.append(1))
    with pytest.raises(ConfigError) as refused:
        gossamer.run(
            MLP,
            overrides=[
                "nodes=2000",
                "data.synthetic.samples=20000",
                "data.partition=iid",
                "data.batch_size=32",
            ],
        )
    message = str(refused.value)
    assert message.startswith("memory: this run needs about ")
    assert "0.00 GB available" in message
    assert "the largest part is parameters (1.27 GB)" in message  # 2,000 x 159,010 x 4
    assert "Use fewer nodes, a smaller model, or more ranks" in message
    assert "engine.check_memory: false skips this check" in message
    assert not built
    monkeypatch.undo()
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**6)
    gossamer.run(small_config(**{"engine.check_memory": "false"}))  # asked not to check


def test_check_fits_names_the_largest_part_and_what_to_change():
    plan = MemoryPlan(
        {"parameters": 30 * 10**9, "optimizer state": 0, "data": 10**8, "process": 4 * 10**8},
        ranks=2,
    )
    with pytest.raises(
        ConfigError,
        match="30.50 GB per rank .* the largest part is parameters "
        r"\(30.00 GB\). Use fewer nodes, a smaller model, or more ranks",
    ):
        check_fits(plan, available=20 * 10**9)
    check_fits(plan, available=31 * 10**9)  # fits: no error


def test_check_fits_on_a_gpu_uses_its_free_memory(monkeypatch):
    """On CUDA the check compares one rank's share with the GPU's free memory (no GPU
    here: mem_get_info is replaced), whatever the host has and however many ranks
    share the host (each rank has its own GPU)."""
    plan = MemoryPlan(
        {"parameters": 3 * 10**9, "optimizer state": 10**9, "data": 10**8, "process": 4 * 10**8}
    )
    asked = []

    def free_and_total(device):
        asked.append(device)
        return (3 * 10**9, 80 * 10**9)

    monkeypatch.setattr(torch.cuda, "mem_get_info", free_and_total)
    reserved = {"bytes": 0}  # PyTorch's cache: reserved, of which 0.5 GB allocated
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: reserved["bytes"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 5 * 10**8)
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**12)  # the host has plenty
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    gpu = torch.device("cuda", 1)
    with pytest.raises(
        ConfigError,
        match=r"4.50 GB \(4.00 GB still to allocate\) and the GPU cuda:1 has 3.00 GB "
        r"available; the largest part is parameters \(3.00 GB\)",
    ):
        check_fits(plan, device=gpu)
    assert asked == [gpu]
    reserved["bytes"] = 15 * 10**8  # an earlier variant's population, freed into the cache
    check_fits(plan, device=gpu)  # 4.00 GB to allocate, 3.00 + 1.00 GB free: fits
    monkeypatch.setattr(memory, "available_bytes", lambda: 10**9)
    with pytest.raises(ConfigError, match="this machine has 1.00 GB"):
        check_fits(plan, device=torch.device("cpu"))  # the host: 8 local ranks x 4 GB


def test_plan_from_the_api_and_the_command_line():
    planned = gossamer.workflow.plan_run(small_config(rounds=6, eval_every=3))
    assert planned["fits"] and planned["memory_total"] > planned["memory_per_rank"]["parameters"]
    assert planned["round_seconds"] > 0 and planned["evaluations"] == 3  # initial, 3, 6
    assert planned["run_seconds"] >= 6 * planned["round_seconds"]
    result = CliRunner().invoke(app, ["plan", "--set", "rounds=20", "--no-probe", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["memory_per_rank"]["process"] == memory.PROCESS_BYTES
    assert "round_seconds" not in shown
    table = CliRunner().invoke(app, ["plan", "--set", "rounds=20"])
    assert "memory: total" in table.stdout and "seconds a round" in table.stdout


def _probe_of(rounds, round_s, evaluations, nodes, evaluation_s, final_s):
    """A probe's numbers, with the run and the share computed as plan_run does."""
    run = rounds * round_s + (evaluations - 1) * evaluation_s + final_s
    return {
        "round_seconds": round_s,
        "evaluation_seconds": evaluation_s,
        "evaluation_nodes": nodes,
        "final_evaluation_seconds": final_s,
        "evaluations": evaluations,
        "run_seconds": run,
        "evaluating_share": (run - rounds * round_s) / run,
    }


def test_plan_advises_sampling_nodes_when_evaluating_dominates(monkeypatch):
    from gossamer.workflow import planning

    advice = planning.evaluation_advice
    aim = "(about 10% of the run evaluating)"
    # 1,000 rounds of 0.1 s, 11 evaluations of all 256 nodes at 4 s (the last too):
    # 44 of 144 s. By hand: 10 x k x 4 / 256 + 4 <= 100 / 9  <=>  k <= 45.5
    config = load_config({"nodes": 256, "rounds": 1000, "eval_every": 100})
    probe = _probe_of(1000, 0.1, 11, 256, 4.0, 4.0)
    assert advice(probe, config) == f"--set eval.nodes=45 {aim}"
    assert 0.099 < (10 * 45 * 4 / 256 + 4) / (100 + 10 * 45 * 4 / 256 + 4) < 0.1
    # with eval.nodes: 64 already, 4 s each (1/16 s a node) and 16 s for the last:
    # the last alone is 16 / 116 = 14%, so the 10 others get 10% of 100 s: k <= 16
    sampled = load_config({"nodes": 256, "rounds": 1000, "eval_every": 100, "eval": {"nodes": 64}})
    probe = _probe_of(1000, 0.1, 11, 64, 4.0, 16.0)
    assert advice(probe, sampled) == (
        "--set eval.nodes=16 (the evaluations before the last at about 10% of the training "
        "time; the last alone is 14% of the run)"
    )
    # followed (26 of 126 s evaluating: still over 20%), it is not repeated
    probe = _probe_of(1000, 0.1, 11, 16, 1.0, 16.0)
    assert advice(probe, sampled) == (
        "nothing to sample: the last evaluation (every node, the whole test set) alone is "
        "14% of the run"
    )
    # 100 rounds of 0.1 s and 128 s an evaluation of 256 nodes (0.5 s a node): the 1 s
    # the others may take is 2 nodes once: one evaluation before the last (the initial)
    config = load_config({"nodes": 256, "rounds": 100, "eval_every": 10})
    probe = _probe_of(100, 0.1, 11, 256, 128.0, 128.0)
    assert advice(probe, config).startswith("--set eval.nodes=2 --set eval_every=100 (")
    probe = _probe_of(100, 0.1, 11, 256, 512.0, 512.0)  # 2 s a node: not even once
    assert advice(probe, config).startswith(
        "--set eval.nodes=2 --set eval_every=100 --set eval.initial=false ("
    )
    two = load_config(
        {"nodes": 2, "rounds": 100, "eval_every": 10, "topology": {"kind": "complete"}}
    )
    probe = _probe_of(100, 0.1, 11, 2, 0.5, 0.5)  # 10 / 9 - 0.5 s for the others: one
    assert advice(probe, two).startswith("--set eval_every=100 (")
    probe = _probe_of(100, 0.1, 1, 256, 5.0, 5.0)  # only the last: 5 of 15 s
    assert advice(probe, config) == (
        "nothing to sample: the last evaluation (every node, the whole test set) alone is "
        "33% of the run"
    )
    assert advice(_probe_of(100, 0.1, 11, 256, 0.01, 0.01), config) is None  # 1%: none

    # the command line shows it
    monkeypatch.setattr(planning, "_probe", lambda config: _probe_of(1000, 0.1, 11, 256, 4.0, 4.0))
    table = CliRunner().invoke(app, ["plan", "--set", "rounds=1000", "--set", "eval_every=100"])
    assert table.exit_code == 0, table.output
    assert "to evaluate less" in table.stdout and "eval.nodes=" in table.stdout


def test_compression_terms_count_messages_residuals_and_the_coordinators_models():
    """Decoded messages and the compressor's temporaries, a residual per node with error
    feedback, and for coordinator protocols b_i and what the coordinator decoded."""
    p = 100 * 159_010 * 4  # one (n, P) float32 tensor of the test's 100 nodes
    assert plan_of([]).terms["compression"] == 0
    top_k = plan_of(["protocol.compression=top_k"]).terms["compression"]
    assert top_k == p + 3 * p  # the decoded messages; the matrix, |x|, the blocks
    feedback = ["protocol.compression=top_k", "protocol.compression.error_feedback=true"]
    assert plan_of(feedback).terms["compression"] == top_k + p
    periodic = ["protocol=periodic", "protocol.compression=sign"]
    assert plan_of(periodic).terms["compression"] == 3 * p + 2 * p  # + b_i, estimates
    choco = plan_of(["protocol=choco", "protocol.compression=top_k"])
    assert choco.terms["protocol"] == p  # the public copies x_hat
