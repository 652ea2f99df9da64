"""Aggregators against their definitions: hand-computed cases, a per-node numpy loop
for gossip (ideal, under churn and loss, with compression), the coordinator's
aggregate against numpy, the mean unchanged bit for bit, config errors, the memory
plan and a user's own aggregator by import_path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import small_config
from gossamer.config import ConfigError
from gossamer.sim import Simulation
from gossamer.sim.memory import aggregation_bytes
from gossamer.sim.network import build_aggregator
from gossamer.sim.network.aggregation.median import MedianConfig
from gossamer.sim.network.aggregation.trimmed_mean import TrimmedMeanConfig
from test_choco import _trained, top_k
from test_network import CHURN, arrives_by_hand, online_by_hand

N = 8
GRAPH = {"topology.kind": "regular", "topology.degree": 4}


def trimmed_mean_by_hand(values: np.ndarray, trim: float) -> np.ndarray:
    """Yin et al.'s Definition 2 per coordinate, by a numpy sort: (c, P) -> (P,)."""
    c = len(values)
    cut = int(np.floor(trim * c))
    ordered = np.sort(values.astype(np.float64), axis=0)
    return ordered[cut : c - cut].mean(axis=0)


def reference(name: str, values: np.ndarray, trim: float = 0.0) -> np.ndarray:
    if name == "median":
        return np.median(values.astype(np.float64), axis=0)
    return trimmed_mean_by_hand(values, trim)


def combine(config, stacks: list[np.ndarray]) -> list[np.ndarray]:
    """The aggregator applied to receivers of different counts (padded with junk)."""
    slots = max(len(s) for s in stacks)
    padded = np.full((len(stacks), slots, stacks[0].shape[1]), 1e6, dtype=np.float32)
    for i, s in enumerate(stacks):
        padded[i, : len(s)] = s
    count = torch.tensor([len(s) for s in stacks])
    out = build_aggregator(config).aggregate([torch.from_numpy(padded)], count, None)
    return list(out[0].numpy())


def test_hand_computed_cases():
    """Five values 1, 2, 3, 100, -50: trimming 20% cuts one at each end (mean of 1, 2,
    3 = 2); the median is 2; of four values the median is the middle pair's mean; a
    single value is itself; trim 0 is the plain mean."""
    five = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, -7.0], [-50.0, 0.0]])
    four = five[:4]
    one = five[:1]
    trimmed = combine(TrimmedMeanConfig(trim=0.2), [five, four, one])
    assert trimmed[0].tolist() == [2.0, 10.0]  # (1+2+3)/3 ; (0+10+20)/3
    assert trimmed[1].tolist() == pytest.approx([26.5, 13.25])  # floor(0.8) = 0: the mean
    assert trimmed[2].tolist() == [1.0, 10.0]
    median = combine(MedianConfig(), [five, four, one])
    assert median[0].tolist() == [2.0, 10.0]
    assert median[1].tolist() == [2.5, 15.0]  # (2+3)/2 ; (10+20)/2
    assert median[2].tolist() == [1.0, 10.0]
    assert combine(TrimmedMeanConfig(trim=0.0), [five])[0].tolist() == pytest.approx(
        five.mean(0).tolist()
    )


@pytest.mark.parametrize("trim", [0.0, 0.2, 0.4])
def test_random_stacks_match_numpy(trim):
    rng = np.random.default_rng(3)
    stacks = [rng.normal(size=(c, 50)).astype(np.float32) for c in (1, 2, 5, 7, 9)]
    for got, stack in zip(combine(TrimmedMeanConfig(trim=trim), stacks), stacks, strict=True):
        np.testing.assert_allclose(got, trimmed_mean_by_hand(stack, trim), rtol=1e-5, atol=1e-6)
    for got, stack in zip(combine(MedianConfig(), stacks), stacks, strict=True):
        np.testing.assert_allclose(got, np.median(stack, axis=0), rtol=1e-6, atol=1e-7)


AGGREGATORS = {
    "median": ("median", 0.0),
    "trimmed_mean": ("{name: trimmed_mean, trim: 0.2}", 0.2),
}


@pytest.mark.parametrize("conditions", [{}, CHURN], ids=["ideal", "churn"])
@pytest.mark.parametrize("name", AGGREGATORS)
@pytest.mark.parametrize("compressed", [False, True], ids=["dense", "top_k"])
def test_gossip_matches_a_per_node_loop(name, conditions, compressed):
    """Each node <- the aggregator over its own trained model and the (decoded) models
    of the neighbours whose messages it used: an edge when both messages arrived (the
    rule of the mean); offline nodes keep their models."""
    section, trim = AGGREGATORS[name]
    compression = "{name: top_k, ratio: 0.3}" if compressed else "none"
    config = small_config(
        nodes=N,
        protocol=f"{{name: dpsgd, aggregator: {section}, compression: {compression}}}",
        **GRAPH,
        **conditions,
    )
    sim = Simulation.build(config)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(N)]
    for t in range(3):
        x = _trained(sim, t)
        online = online_by_hand(config.seed, t, N, 0.7) if conditions else [True] * N

        def arrives(j, i, t=t, online=online):
            if not conditions:
                return True
            return online[j] and online[i] and arrives_by_hand(config.seed, t, 1, j, i, 0.9)

        sent = [top_k(x[i], 0.3) if compressed else x[i] for i in range(N)]
        expected = []
        for i in range(N):
            live = [j for j in neighbours[i] if arrives(j, i) and arrives(i, j)]
            stack = np.stack([x[i].numpy()] + [sent[j].numpy() for j in live])
            expected.append(reference(name, stack, trim))
        sim.protocol.communicate(t)
        np.testing.assert_allclose(
            sim.population.params.matrix().numpy(), np.stack(expected), rtol=1e-5, atol=1e-6
        )
        if conditions:
            for i in range(N):
                if not online[i]:
                    assert torch.equal(sim.population.params.matrix()[i], x[i])


def recorded(network, method: str, calls: list) -> None:
    """Record what ``network.<method>`` returns, call by call."""
    original = getattr(network, method)

    def wrapper(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    setattr(network, method, wrapper)


@pytest.mark.parametrize("name", AGGREGATORS)
def test_the_coordinator_combines_what_it_received(name):
    """periodic: the nodes the download reaches adopt the coordinator's aggregate of the
    models that arrived this round (under churn and loss); the others keep theirs."""
    section, trim = AGGREGATORS[name]
    config = small_config(
        nodes=N, protocol=f"{{name: periodic, period: 1, aggregator: {section}}}", **CHURN
    )
    sim = Simulation.build(config)
    uploads, downloads = [], []
    recorded(sim.network, "upload", uploads)
    recorded(sim.network, "download", downloads)
    synced = 0
    for t in range(4):
        x = _trained(sim, t)
        uploads.clear(), downloads.clear()
        sim.protocol.communicate(t)
        after = sim.population.params.matrix()
        arrived = uploads[0].nonzero().squeeze(1).tolist()
        reached = downloads[0] if downloads else torch.zeros(N, dtype=torch.bool)
        for i in range(N):
            if reached[i]:
                expected = reference(name, x[arrived].numpy(), trim)
                np.testing.assert_allclose(after[i].numpy(), expected, rtol=1e-5, atol=1e-6)
            else:
                assert torch.equal(after[i], x[i])
        synced += int(reached.sum())
    assert synced > N  # the test saw aggregates reach nodes


def test_trim_zero_on_a_regular_graph_is_the_mean():
    """On a d-regular graph Metropolis-Hastings weights are all 1/(d + 1): trimming
    nothing gives the default mean's models (to float rounding: another summation)."""
    runs = {}
    for section in ("mean", "{name: trimmed_mean, trim: 0.0}"):
        sim = Simulation.build(small_config(nodes=N, **GRAPH, **{"protocol.aggregator": section}))
        for t in range(3):
            _trained(sim, t)
            sim.protocol.communicate(t)
        runs[section] = sim.population.params.matrix()
    mean, trimmed = runs.values()
    torch.testing.assert_close(trimmed, mean, rtol=1e-5, atol=1e-6)
    assert not torch.equal(mean, torch.zeros_like(mean))


def test_chunks_of_receivers_give_the_same_models(monkeypatch):
    """A stack budget of one receiver at a time changes nothing, bit for bit."""
    from gossamer.sim.network import network

    results = []
    for budget in (network.STACK_BUDGET, 1):
        monkeypatch.setattr(network, "STACK_BUDGET", budget)
        config = small_config(nodes=N, **GRAPH, **CHURN, **{"protocol.aggregator": "median"})
        sim = Simulation.build(config)
        for t in range(2):
            _trained(sim, t)
            sim.protocol.communicate(t)
        results.append(sim.population.params.matrix())
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["protocol={name: choco, aggregator: median}"], "only 'mean' describes"),
        (["protocol={name: pushsum, aggregator: median}"], "only 'mean' describes"),
        (["protocol.aggregator={name: trimmed_mean, trim: 0.5}"], "protocol.aggregator.trim"),
        (["protocol.aggregator={name: trimmed_mean, trim: -0.1}"], "protocol.aggregator.trim"),
        (["protocol.aggregator=krum"], "expected one of mean, median, trimmed_mean"),
        (
            [
                "protocol.aggregator=median",
                "protocol.compression={name: top_k, ratio: 0.1, error_feedback: ef21}",
            ],
            "ef21",
        ),
    ],
)
def test_bad_aggregators_are_refused_naming_the_key(overrides, expected):
    with pytest.raises(ConfigError, match="aggregator") as error:
        small_config(**dict(o.split("=", 1) for o in overrides))
    assert expected in str(error.value)


def test_an_aggregator_of_ones_own_by_import_path(tmp_path):
    """A user's aggregator (a file, not registered): the coordinate-wise maximum."""
    (tmp_path / "largest.py").write_text(
        "from typing import Literal\n"
        "from gossamer.config import AggregatorConfig\n"
        "from gossamer.sim.network import Aggregator\n"
        "class LargestConfig(AggregatorConfig):\n"
        "    name: Literal['largest'] = 'largest'\n"
        "class Largest(Aggregator):\n"
        "    config_class = LargestConfig\n"
        "    def aggregate(self, values, count, center):\n"
        "        out = []\n"
        "        for block in values:\n"
        "            slots = block.new_tensor(range(block.shape[1]))\n"
        "            pad = slots[None, :] >= count[:, None]\n"
        "            out.append(block.masked_fill(pad[:, :, None], -1e30).amax(1))\n"
        "        return out\n"
    )
    section = f"{{name: custom, import_path: '{tmp_path / 'largest.py'}:Largest'}}"
    config = small_config(nodes=N, **GRAPH, **{"protocol.aggregator": section})
    sim = Simulation.build(config)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(N)]
    x = _trained(sim, 0)
    sim.protocol.communicate(0)
    expected = torch.stack([x[[i, *neighbours[i]]].amax(0) for i in range(N)])
    assert torch.equal(sim.population.params.matrix(), expected)


def test_the_memory_plan_counts_the_stacks():
    """Nothing for the mean; at the coordinator, the stack of all N models and the
    sorting network's running sum and result; in gossip, the combined models and one
    chunk of stacks (a node and its 4 neighbours: 5 slots) with those temporaries."""
    p = 1000
    mean = small_config(nodes=N)
    assert aggregation_bytes(mean, N, p, 1) == 0
    periodic = small_config(nodes=N, protocol="{name: periodic, aggregator: median}")
    assert aggregation_bytes(periodic, N, p, 1) == N * p * 4 + 2 * p * 4
    assert aggregation_bytes(periodic, N, p, 2) == 2 * N * p * 4 + 2 * p * 4  # + gathered
    gossip = small_config(nodes=N, **GRAPH, **{"protocol.aggregator": "median"})
    assert aggregation_bytes(gossip, N, p, 1) == N * p * 4 + N * (5 + 2) * p * 4


@pytest.mark.parametrize("slots", [3, 7, 20])
def test_the_sorting_network_sorts_like_torch_sort(slots, monkeypatch):
    """Tiles smaller than a slot (the network's loop over tiles) and more slots than
    the network takes (torch.sort): the same sorted values, bit for bit."""
    from gossamer.sim.network.aggregation import base

    monkeypatch.setattr(base, "SORT_TILE", 37)
    stack = torch.randn(slots, 4, 50)
    stack[1, 2, 3] = stack[0, 2, 3]  # ties
    expected = stack.sort(dim=0).values
    base.sort_slots_(stack)
    assert torch.equal(stack, expected)
