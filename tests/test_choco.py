"""The message layer against per-node loops: naive compressed D-PSGD, CHOCO-SGD (the
paper's Algorithm 1 transcribed), compressed uploads to a coordinator, compressed
event-triggered gossip; the bytes they are charged; the fast path kept bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import small_config
from gossamer.sim import Simulation
from gossamer.sim.topology import Mixer
from test_network import CHURN, arrives_by_hand, online_by_hand

N = 6
LOSSY = {"network.delivery": 0.7}


def top_k(row: torch.Tensor, ratio: float) -> torch.Tensor:
    """Top-k of one node's vector, by a numpy sort: the reference compressor."""
    k = max(1, round(ratio * row.numel()))
    keep = np.argsort(-np.abs(row.double().numpy()), kind="stable")[:k]
    out = torch.zeros_like(row)
    out[keep] = row[keep]
    return out


def _trained(sim: Simulation, t: int) -> torch.Tensor:
    """Round t's training (the engine's; checked against loops elsewhere) and the
    network's round start; returns the trained models (N, P)."""
    sim.network.begin_round(t)
    sim.ledger.begin_round()
    mask = None if sim.network.everyone_trains else sim.network.trainers
    sim.population.train(1, mask, round=t)
    return sim.population.params.matrix()


def _graph(sim: Simulation):
    w = torch.tensor(sim.topology.dense(), dtype=torch.float32)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(sim.config.nodes)]
    return w, neighbours


def test_without_compression_gossip_is_the_mixer_applied_to_the_trained_models():
    """The ideal-network fast path, bit for bit: X <- W X by the mixer itself."""
    sim = Simulation.build(small_config(nodes=N, **{"protocol.compression": "none"}))
    reference = Mixer(sim.topology, torch.device("cpu"))
    for t in range(3):
        x = _trained(sim, t)
        expected = x.clone()
        reference.apply_([expected])
        sim.protocol.communicate(t)
        assert torch.equal(sim.population.params.matrix(), expected)


@pytest.mark.parametrize("conditions", [{}, CHURN], ids=["ideal", "churn"])
def test_naive_compressed_dpsgd_matches_a_per_node_loop(conditions):
    """x_i <- W_ii x_i + sum_j W_ij top_k(x_j), W on the live subgraph."""
    ratio = 0.2
    config = small_config(
        nodes=N,
        protocol=f"{{name: dpsgd, compression: {{name: top_k, ratio: {ratio}}}}}",
        **conditions,
    )
    sim = Simulation.build(config)
    _, neighbours = _graph(sim)
    for t in range(4):
        x = _trained(sim, t)
        online = online_by_hand(config.seed, t, N, 0.7) if conditions else [True] * N

        def arrives(j, i, t=t, online=online):
            if not conditions:
                return True
            return online[j] and online[i] and arrives_by_hand(config.seed, t, 1, j, i, 0.9)

        live = [[j for j in neighbours[i] if arrives(j, i) and arrives(i, j)] for i in range(N)]
        sent = [top_k(x[i], ratio) for i in range(N)]
        expected = x.clone()
        for i in range(N):
            weights = {j: 1 / (1 + max(len(live[i]), len(live[j]))) for j in live[i]}
            expected[i] = (1 - sum(weights.values())) * x[i]
            for j, w in weights.items():
                expected[i] += w * sent[j]
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def _choco_loop(sim, conditions, ratio, gamma, rounds, start_zero=True):
    """CHOCO-SGD's Algorithm 1 node by node: x_hat_i and every copy x_hat_j that node i
    holds (a copy of j updated only by the q_j that reached i); mixing with the static
    graph's W. Yields (round, expected models, mean before, mean after)."""
    config = sim.config
    w, neighbours = _graph(sim)
    p = sim.population.params.num_params
    start = torch.zeros(p) if start_zero else sim.population.params.matrix()[0]
    own = [start.clone() for _ in range(N)]
    held = {(i, j): start.clone() for i in range(N) for j in neighbours[i]}
    for t in range(rounds):
        x = _trained(sim, t)
        churn = "network.availability" in conditions
        online = online_by_hand(config.seed, t, N, 0.7) if churn else [True] * N
        delivery = conditions.get("network.delivery", 1.0)
        q = [top_k(x[i] - own[i], ratio) if online[i] else None for i in range(N)]
        for i in range(N):
            if online[i]:
                own[i] = own[i] + q[i]  # line 7 for the node itself
        for i in range(N):
            for j in neighbours[i]:
                arrived = online[j] and online[i]
                if delivery < 1:
                    arrived = arrived and arrives_by_hand(config.seed, t, 1, j, i, delivery)
                if arrived:
                    held[i, j] = held[i, j] + q[j]
        expected = x.clone()
        for i in range(N):
            if not online[i]:
                continue
            total = w[i, i] * own[i] + sum(w[i, j] * held[i, j] for j in neighbours[i])
            expected[i] = x[i] + gamma * (total - own[i])  # line 8
        yield t, x, expected


@pytest.mark.parametrize("conditions", [{}, LOSSY, CHURN], ids=["ideal", "loss", "churn_and_loss"])
def test_choco_matches_the_papers_algorithm_node_by_node(conditions):
    ratio, gamma = 0.25, 0.4
    config = small_config(
        nodes=N,
        protocol=(
            f"{{name: choco, consensus_step: {gamma}, "
            f"compression: {{name: top_k, ratio: {ratio}}}}}"
        ),
        **conditions,
    )
    sim = Simulation.build(config)
    for t, _, expected in _choco_loop(sim, conditions, ratio, gamma, rounds=5):
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_choco_keeps_the_mean_on_reliable_links_and_not_under_loss():
    """The consensus step preserves the average of the x_i (Koloskova et al. 2019: with a
    doubly stochastic W, x_bar^{t+1} = x_bar^{t+1/2}); a lost q_j leaves a copy of x_hat_j
    wrong for good, and the mean then drifts."""
    drift = {}
    for name, conditions in (("ideal", {}), ("loss", {"network.delivery": 0.6})):
        config = small_config(
            nodes=12,
            protocol="{name: choco, consensus_step: 0.5, compression: {name: top_k, ratio: 0.3}}",
            **{"topology.kind": "regular", "topology.degree": 4},
            **conditions,
        )
        sim = Simulation.build(config)
        worst = 0.0
        for t in range(8):
            x = _trained(sim, t)
            sim.protocol.communicate(t)
            after = sim.population.params.matrix().double().mean(0)
            worst = max(worst, float((after - x.double().mean(0)).abs().max()))
        drift[name] = worst
    assert drift["ideal"] < 1e-6
    assert drift["loss"] > 1e-4


def test_choco_without_compression_and_step_one_is_dpsgd():
    runs = {}
    for protocol in ("dpsgd", "{name: choco, consensus_step: 1.0}"):
        sim = Simulation.build(small_config(nodes=N, rounds=6, protocol=protocol))
        for t in range(6):
            sim.step(t)
        runs[protocol] = sim.population.params.matrix()
    assert torch.equal(*runs.values())


@pytest.mark.parametrize("conditions", [{}, CHURN], ids=["ideal", "churn"])
def test_compressed_periodic_averaging_matches_a_per_node_loop(conditions):
    """Each node uploads top_k(x_i - b_i) (b_i: the model it last received, at first the
    start model); the coordinator averages b_i + C(x_i - b_i) over what arrived and sends
    the average back whole; the nodes it reaches adopt it and make it their b_i."""
    ratio = 0.3
    config = small_config(
        nodes=N,
        protocol=f"{{name: periodic, period: 2, compression: {{name: top_k, ratio: {ratio}}}}}",
        **conditions,
    )
    sim = Simulation.build(config)
    base = sim.population.params.matrix().clone()  # every b_i: the start model
    for t in range(6):
        x = _trained(sim, t)
        expected = x.clone()
        if (t + 1) % 2 == 0:
            online = online_by_hand(config.seed, t, N, 0.7) if conditions else [True] * N

            def arrives(sender, receiver, exchange, t=t):
                return not conditions or arrives_by_hand(
                    config.seed, t, exchange, sender, receiver, 0.9
                )

            held = [i for i in range(N) if online[i] and arrives(i, N, 1)]
            if held:
                estimates = [base[i] + top_k(x[i] - base[i], ratio) for i in held]
                average = torch.stack(estimates).double().mean(0).float()
                for i in range(N):
                    if online[i] and arrives(N, i, 2):
                        expected[i] = average
                        base[i] = average
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_compressed_dynamic_gossip_matches_a_per_node_loop():
    """A node whose model moved more than delta from its public s_i sends top_k(x_i - s_i),
    which s_i and its neighbours' copies add; then the consensus step."""
    ratio, gamma, delta = 0.3, 0.5, 1e-3
    config = small_config(
        nodes=N,
        protocol=(
            f"{{name: dynamic_gossip, delta: {delta}, consensus_step: {gamma}, "
            f"compression: {{name: top_k, ratio: {ratio}}}}}"
        ),
    )
    sim = Simulation.build(config)
    w, neighbours = _graph(sim)
    public = sim.population.params.matrix().clone()  # s_i: the start model
    sent_total = 0
    for t in range(5):
        x = _trained(sim, t)
        for i in range(N):
            if float(((x[i] - public[i]).double() ** 2).sum()) > delta:
                public[i] = public[i] + top_k(x[i] - public[i], ratio)
                sent_total += 1
        expected = x.clone()
        for i in range(N):
            total = w[i, i] * public[i] + sum(w[i, j] * public[j] for j in neighbours[i])
            expected[i] = x[i] + gamma * (total - public[i])
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)
    assert sent_total > 0


@pytest.mark.parametrize("protocol", ["{name: dynamic_gossip, delta: 0.001}", "choco"])
def test_public_models_mean_the_same_on_the_ideal_and_the_per_edge_path(protocol):
    """What a node holds of a neighbour has one meaning: the per-edge copies (the path
    under conditions) with nothing lost give the ideal path's numbers."""
    runs = []
    for per_edge in (False, True):
        sim = Simulation.build(
            small_config(
                nodes=N, protocol=protocol, **{"protocol.compression": "{name: top_k, ratio: 0.2}"}
            )
        )
        sim.network.ideal = not per_edge  # nothing is lost either way
        for t in range(5):
            sim.step(t)
        runs.append(sim.population.params.matrix())
    torch.testing.assert_close(runs[1], runs[0], rtol=1e-6, atol=1e-7)


def test_compression_is_charged_in_bytes_seconds_and_joules():
    """A top-1% message is its encoding plus the header; fewer bytes are fewer simulated
    seconds of transfer and fewer Joules on the link."""
    base = {"nodes": N, "rounds": 4, "energy.link": "wavelan"}
    runs = {}
    for name in ("none", "{name: top_k, ratio: 0.01}"):
        sim = Simulation.build(small_config(**base, **{"protocol.compression": name}))
        for t in range(4):
            sim.ledger.begin_round()
            sim.step(t)
        runs[name] = sim
    dense, sparse = runs["none"], runs["{name: top_k, ratio: 0.01}"]
    p = dense.population.params.num_params
    k = max(1, round(0.01 * p))
    messages = dense.ledger.totals()["messages"]
    assert sparse.ledger.totals()["messages"] == messages
    assert dense.ledger.totals()["bytes_sent"] == messages * (4 * p + 32)
    assert sparse.ledger.totals()["bytes_sent"] == messages * (8 * k + 32)
    assert sparse.simulated_seconds < dense.simulated_seconds
    assert (
        sparse.ledger.totals()["communication_joules"]
        < dense.ledger.totals()["communication_joules"]
    )


@pytest.mark.parametrize("conditions", [{}, LOSSY], ids=["ideal", "loss"])
def test_ef21_gossip_matches_a_per_node_loop(conditions):
    """error_feedback: ef21 (Richtarik et al. 2021, for models): each node sends
    top_k(x_i - h_i) and everyone holding h_i adds it; x_i <- W_ii x_i + sum_j W_ij h_ij."""
    ratio = 0.25
    config = small_config(
        nodes=N,
        **{"protocol.compression": f"{{name: top_k, ratio: {ratio}, error_feedback: ef21}}"},
        **conditions,
    )
    sim = Simulation.build(config)
    w, neighbours = _graph(sim)
    start = sim.population.params.matrix()[0]
    own = [start.clone() for _ in range(N)]
    held = {(i, j): start.clone() for i in range(N) for j in neighbours[i]}
    delivery = conditions.get("network.delivery", 1.0)
    for t in range(5):
        x = _trained(sim, t)
        sent = [top_k(x[i] - own[i], ratio) for i in range(N)]
        for i in range(N):
            own[i] = own[i] + sent[i]
            for j in neighbours[i]:
                if delivery == 1.0 or arrives_by_hand(config.seed, t, 1, j, i, delivery):
                    held[i, j] = held[i, j] + sent[j]
        expected = x.clone()
        for i in range(N):
            expected[i] = w[i, i] * x[i] + sum(w[i, j] * held[i, j] for j in neighbours[i])
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_ef21_uploads_keep_an_estimate_between_downloads():
    """Periodic averaging with ef21: the estimate h_i the coordinator holds moves by
    each compressed upload and is reset by each download."""
    ratio = 0.3
    config = small_config(
        nodes=N,
        protocol=(
            "{name: periodic, period: 2, compression: "
            f"{{name: top_k, ratio: {ratio}, error_feedback: ef21}}}}"
        ),
    )
    sim = Simulation.build(config)
    estimate = sim.population.params.matrix().clone()
    for t in range(6):
        x = _trained(sim, t)
        expected = x.clone()
        if (t + 1) % 2 == 0:
            for i in range(N):
                estimate[i] = estimate[i] + top_k(x[i] - estimate[i], ratio)
            average = estimate.double().mean(0).float()
            expected[:] = average
            estimate[:] = average
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_ef21_is_refused_where_it_adds_nothing_or_cannot_work():
    from gossamer.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="already sends compressed changes"):
        load_config(
            {
                "protocol": {
                    "name": "choco",
                    "compression": {"name": "sign", "error_feedback": "ef21"},
                }
            }
        )
    with pytest.raises(ConfigError, match="keeps estimates per neighbour"):
        load_config(
            {
                "topology": {"kind": "one_peer_exponential"},
                "protocol": {
                    "name": "dpsgd",
                    "compression": {"name": "sign", "error_feedback": "ef21"},
                },
            }
        )
