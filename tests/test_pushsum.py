"""Stochastic Gradient Push against a per-node push-sum loop, on fixed and time-varying
directed graphs, with and without loss; what push-sum keeps and what it loses."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import small_config
from gossamer.config import ConfigError, load_config
from gossamer.sim import Simulation
from test_choco import _trained
from test_network import arrives_by_hand, online_by_hand

N = 8


def _out_neighbours(sim, t: int) -> list[list[int]]:
    """Each node's out-neighbours in round t, by hand: every neighbour on a fixed graph,
    i -> i + 2^(t mod log2 N) on the one-peer exponential graph."""
    if sim.config.topology.kind == "one_peer_exponential":
        hop = 2 ** (t % math.ceil(math.log2(N)))
        return [[(i + hop) % N] for i in range(N)]
    return [sorted(sim.topology.graph.neighbors(i)) for i in range(N)]


def _push_sum_loop(z, w, out, online, arrives, acknowledgements):
    """One push-sum step node by node: x = w z; shares of (x, w); z = x / w."""
    x = [w[i] * z[i].double() for i in range(N)]
    new_x = [torch.zeros_like(x[0]) for _ in range(N)]
    new_w = [0.0] * N
    for j in range(N):
        targets = out[j] if online[j] else []
        share = 1.0 / (1 + len(targets))
        kept = share
        for i in targets:
            if online[i] and arrives(j, i):
                new_x[i] += share * x[j]
                new_w[i] += share * w[j]
            elif acknowledgements:
                kept += share
        new_x[j] += kept * x[j]
        new_w[j] += kept * w[j]
    return torch.stack([new_x[i] / new_w[i] for i in range(N)]).float(), new_w


@pytest.mark.parametrize("kind", ["ring", "one_peer_exponential"])
@pytest.mark.parametrize(
    "conditions",
    [{}, {"network.delivery": 0.7}, {"network.availability": "{kind: bernoulli, online: 0.8}"}],
    ids=["ideal", "loss", "churn"],
)
@pytest.mark.parametrize("acknowledgements", [False, True], ids=["plain", "acks"])
def test_push_sum_matches_a_per_node_loop(kind, conditions, acknowledgements):
    config = small_config(
        nodes=N,
        protocol=f"{{name: pushsum, acknowledgements: {str(acknowledgements).lower()}}}",
        **{"topology.kind": kind},
        **conditions,
    )
    sim = Simulation.build(config)
    w = [1.0] * N
    delivery = conditions.get("network.delivery", 1.0)
    churn = "network.availability" in conditions
    for t in range(6):
        z = _trained(sim, t)
        online = online_by_hand(config.seed, t, N, 0.8) if churn else [True] * N

        def arrives(j, i, t=t):
            return delivery == 1.0 or arrives_by_hand(config.seed, t, 1, j, i, delivery)

        expected, w = _push_sum_loop(
            z, w, _out_neighbours(sim, t), online, arrives, acknowledgements
        )
        sim.protocol.communicate(t)
        torch.testing.assert_close(sim.protocol.weight, torch.tensor(w, dtype=torch.float64))
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_push_sum_keeps_the_sums_unless_shares_are_lost_without_acknowledgements():
    """Without loss the weighted sum of the models and the sum of the weights are kept;
    lost shares lose mass unless the senders keep them (acknowledgements)."""
    totals = {}
    for name, extra in (
        ("ideal", {}),
        ("loss", {"network.delivery": 0.7}),
        ("loss_acks", {"network.delivery": 0.7, "protocol.acknowledgements": "true"}),
    ):
        config = small_config(
            nodes=N, protocol="pushsum", **{"topology.kind": "one_peer_exponential"}, **extra
        )
        sim = Simulation.build(config)
        for t in range(6):
            z = _trained(sim, t)
            before = (sim.protocol.weight[:, None] * z.double()).sum(0)
            sim.protocol.communicate(t)
            after = sim.protocol.weight[:, None] * sim.population.params.matrix().double()
            if name != "loss":
                torch.testing.assert_close(after.sum(0), before, rtol=1e-5, atol=1e-5)
        totals[name] = float(sim.protocol.weight.sum())
    assert totals["ideal"] == pytest.approx(N, abs=1e-12)
    assert totals["loss_acks"] == pytest.approx(N, abs=1e-12)
    assert totals["loss"] < N - 0.1


def test_push_sum_rejects_compression():
    with pytest.raises(ConfigError, match="pushsum' does not compress"):
        load_config({"protocol": {"name": "pushsum", "compression": "top_k"}})


def test_push_sum_messages_carry_the_weight():
    sim = Simulation.build(small_config(nodes=N, protocol="pushsum"))
    sim.step(0)
    ring_messages = 2 * N
    assert sim.ledger.totals()["bytes_sent"] == ring_messages * (sim.network.message_bytes + 8)
