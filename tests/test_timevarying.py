"""Time-varying topologies against plain per-node loops and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gossamer
from conftest import small_config
from gossamer.config import ConfigError
from gossamer.sim import Simulation
from gossamer.sim.rng import Purpose, hash32, uniform
from gossamer.sim.topology import build_topology


def network_of(**overrides):
    """A simulation's network with distinct random models in place."""
    sim = Simulation.build(small_config(**overrides))
    params = sim.population.params
    params.copy_from_matrix(
        torch.randn(sim.config.nodes, params.num_params, dtype=torch.float64).float()
    )
    return sim


def test_one_peer_exponential_by_hand_reaches_the_exact_average():
    sim = network_of(nodes=8, **{"topology.kind": "one_peer_exponential"})
    x = sim.population.params.matrix().double()
    mean = x.mean(0)
    for t in range(3):  # hops 1, 2, 4: x_i <- (x_i + x_{i - hop}) / 2
        hop = 2**t
        x = (x + x[[(i - hop) % 8 for i in range(8)]]) / 2
        sim.network.begin_round(t)
        received = sim.network.gossip()
        assert received.tolist() == [1] * 8
        torch.testing.assert_close(sim.population.params.matrix().double(), x, atol=1e-6, rtol=0)
        gap = sim.network.round_stats["spectral_gap"]
        # W = (I + P_hop) / 2: eigenvalues (1 + w^(m hop)) / 2 with w = exp(2 pi i / 8)
        expected = 1 - np.sort(np.abs((1 + np.exp(2j * np.pi * np.arange(8) * hop / 8)) / 2))[-2]
        assert gap == pytest.approx(max(0.0, expected), abs=1e-12)
    torch.testing.assert_close(
        sim.population.params.matrix().double(), mean.expand(8, -1), atol=1e-6, rtol=0
    )


def test_epidemic_learning_matches_a_per_node_loop():
    n, s = 9, 3
    sim = network_of(nodes=n, **{"topology.kind": "epidemic", "topology.fanout": s})
    seed = sim.config.seed
    for t in range(3):
        x = sim.population.params.matrix().double()
        targets = {}
        for i in range(n):  # the s other nodes with the smallest keys
            keys = {j: int(hash32(seed, Purpose.TOPOLOGY, t, i, j)) for j in range(n) if j != i}
            targets[i] = sorted(keys, key=keys.get)[:s]
        inbox = {i: [j for j in range(n) if i in targets[j]] for i in range(n)}
        expected = torch.stack(
            [(x[i] + sum(x[j] for j in inbox[i])) / (1 + len(inbox[i])) for i in range(n)]
        )
        sim.network.begin_round(t)
        sim.ledger.begin_round()
        received = sim.network.gossip()
        assert received.tolist() == [len(inbox[i]) for i in range(n)]
        assert sim.ledger.totals()["messages"] == n * s * (t + 1)
        torch.testing.assert_close(
            sim.population.params.matrix().double(), expected, atol=1e-6, rtol=0
        )


def test_epidemic_under_loss_averages_only_what_arrived():
    n, s = 8, 2
    sim = network_of(
        nodes=n, **{"topology.kind": "epidemic", "topology.fanout": s, "network.delivery": 0.5}
    )
    seed, x = sim.config.seed, sim.population.params.matrix().double()
    inbox = {i: [] for i in range(n)}
    for i in range(n):
        keys = {j: int(hash32(seed, Purpose.TOPOLOGY, 0, i, j)) for j in range(n) if j != i}
        for j in sorted(keys, key=keys.get)[:s]:
            if float(uniform(seed, Purpose.DELIVERY, 0, 1, i, j)) < 0.5:
                inbox[j].append(i)
    sim.network.begin_round(0)
    sim.network.gossip()
    expected = torch.stack(
        [(x[i] + sum(x[j] for j in inbox[i])) / (1 + len(inbox[i])) for i in range(n)]
    )
    torch.testing.assert_close(sim.population.params.matrix().double(), expected, atol=1e-6, rtol=0)
    assert 0 < sim.ledger.totals()["messages_lost"] < n * s


def test_resampled_graphs_change_every_k_rounds_and_keep_the_mean():
    overrides = {"topology.kind": "regular", "topology.degree": 3, "topology.resample_every": 2}
    sim = network_of(nodes=10, **overrides)
    static = build_topology(
        small_config(nodes=10, **{**overrides, "topology.resample_every": 0}).topology, 10, 3
    )
    graphs = []
    for t in range(6):
        graph = sim.network.schedule.at(t)
        graphs.append(sorted(zip(graph.receiver.tolist(), graph.sender.tolist(), strict=True)))
        before = sim.population.params.matrix().double().mean(0)
        sim.network.begin_round(t)
        sim.network.gossip()
        torch.testing.assert_close(
            sim.population.params.matrix().double().mean(0), before, atol=1e-6, rtol=0
        )
    assert graphs[0] == graphs[1] != graphs[2] == graphs[3] != graphs[4] == graphs[5]
    first = sorted(
        (int(i), int(j)) for i, j in zip(static.rows, static.cols, strict=True) if i != j
    )
    assert graphs[0] == first  # epoch 0 is the static graph of the same config
    assert all(len(g) == 10 * 3 for g in graphs)  # every epoch 3-regular
    result = gossamer.run(small_config(nodes=10, rounds=6, **overrides))
    gaps = result.rounds["spectral_gap"]
    assert not math.isnan(gaps[0]) and math.isnan(gaps[1]) and not math.isnan(gaps[2])
    assert result.summary["topology"]["resample_every"] == 2


def test_time_varying_settings_are_checked():
    with pytest.raises(ConfigError, match="resample_every: fresh graphs need a random kind"):
        small_config(**{"topology.resample_every": 2})  # SMALL uses a ring
    with pytest.raises(ConfigError, match="fanout: expected fewer than nodes"):
        small_config(**{"topology.kind": "epidemic", "topology.fanout": 6})
    with pytest.raises(ConfigError, match="'dynamic_gossip' needs a fixed graph"):
        small_config(protocol="dynamic_gossip", **{"topology.kind": "one_peer_exponential"})
    with pytest.raises(ConfigError, match="'uniform' is not symmetric on a live or changing"):
        small_config(
            **{"topology.kind": "epidemic", "topology.fanout": 2, "topology.weights": "uniform"}
        )
    with pytest.raises(ConfigError, match="'uniform' is not symmetric on a live or changing"):
        small_config(**{"network.delivery": 0.9, "topology.weights": "uniform"})


def test_runs_on_time_varying_graphs_learn_and_resume(tmp_path):
    from conftest import stop_at
    from gossamer.workflow import RunInterrupted
    from test_workflow import assert_same_run

    for kind in ("epidemic", "one_peer_exponential"):
        config = small_config(
            nodes=8, rounds=12, checkpoint_every=3, **{"topology.kind": kind, "topology.fanout": 2}
        )
        whole = gossamer.run(config, out=tmp_path / f"{kind}-whole")
        assert whole.summary["topology"]["time_varying"] is True
        with pytest.raises(RunInterrupted):
            gossamer.run(config, out=tmp_path / f"{kind}-cut", progress=stop_at(7))
        gossamer.resume(tmp_path / f"{kind}-cut")
        assert_same_run(tmp_path / f"{kind}-whole", tmp_path / f"{kind}-cut")
