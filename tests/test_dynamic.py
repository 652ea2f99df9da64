"""Dynamic averaging against a plain Python coordinator, identities and hand counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gossamer
from conftest import assert_same_learning, small_config
from gossamer.config import ConfigError
from gossamer.sim import Simulation
from gossamer.sim.accounting import HEADER_BYTES
from gossamer.sim.rng import Purpose, hash32


class LoopCoordinator:
    """Kamp et al.'s coordinator written plainly: lists of node vectors, Python loops."""

    def __init__(self, reference, delta, period, fraction, augmentation, seed):
        self.reference = reference.clone()
        self.delta, self.period, self.fraction = delta, period, fraction
        self.augmentation, self.seed = augmentation, seed

    def communicate(self, rows: list[torch.Tensor], round_: int) -> dict[str, int]:
        """Mutates rows; returns message counts (models up/down, requests)."""
        counts = {"model_up": 0, "model_down": 0, "requests": 0}
        if (round_ + 1) % self.period:
            return counts
        n = len(rows)

        def dist(x):
            return float(((x.double() - self.reference.double()) ** 2).sum())

        holding = [i for i in range(n) if dist(rows[i]) > self.delta]
        counts["model_up"] += len(holding)
        if not holding:
            return counts
        step = 0
        while len(holding) < n:
            average = sum(rows[i].double() for i in holding) / len(holding)
            if dist(average) <= self.delta:
                for i in holding:
                    rows[i] = average.float()
                counts["model_down"] += len(holding)
                return counts
            wanted = min(2 * len(holding) if self.augmentation == "double" else 1, n - len(holding))
            if len(holding) + wanted >= self.fraction * n:
                break
            candidates = [i for i in range(n) if i not in holding]
            keys = {
                i: int(hash32(self.seed, Purpose.PROTOCOL, round_, step, i)) for i in candidates
            }
            new = sorted(candidates, key=lambda i: (keys[i], i))[:wanted]
            counts["requests"] += len(new)
            counts["model_up"] += len(new)
            holding += new
            step += 1
        missing = n - len(holding)
        counts["requests"] += missing
        counts["model_up"] += missing
        average = sum(r.double() for r in rows) / n
        for i in range(n):
            rows[i] = average.float()
        self.reference = average.float()
        counts["model_down"] += n
        return counts


@pytest.mark.parametrize(
    ("delta", "period", "fraction", "augmentation"),
    [
        (0.02, 1, 0.5, "double"),
        (0.05, 2, 0.5, "double"),
        (0.03, 1, 1.0, "one"),
        (0.0, 1, 0.5, "one"),
    ],
)
def test_balancing_matches_plain_coordinator(delta, period, fraction, augmentation):
    config = small_config(
        **{
            "nodes": 9,
            "rounds": 12,
            "protocol": f"{{name: dynamic, delta: {delta}, period: {period}, "
            f"full_sync_fraction: {fraction}, augmentation: {augmentation}}}",
        }
    )
    sim = Simulation.build(config)
    protocol, population, ledger = sim.protocol, sim.population, sim.ledger
    loop = LoopCoordinator(
        protocol.reference.matrix()[0], delta, period, fraction, augmentation, config.seed
    )
    model_bytes = sim.network.message_bytes
    seen = {"partial_syncs": 0, "full_syncs": 0, "balancing_steps": 0}
    for t in range(config.rounds):
        population.train(1, round=t)
        rows = list(population.params.matrix())
        counts = loop.communicate(rows, t)
        before = ledger.totals()
        stats = protocol.communicate(t)
        after = ledger.totals()
        for key in seen:
            seen[key] += stats[key]
        messages = counts["model_up"] + counts["model_down"] + counts["requests"]
        assert after["messages"] - before["messages"] == messages
        expected_bytes = (counts["model_up"] + counts["model_down"]) * model_bytes
        expected_bytes += counts["requests"] * HEADER_BYTES
        assert after["bytes_sent"] - before["bytes_sent"] == expected_bytes
        torch.testing.assert_close(population.params.matrix(), torch.stack(rows), rtol=0, atol=2e-6)
        torch.testing.assert_close(
            protocol.reference.matrix()[0], loop.reference, rtol=0, atol=2e-6
        )
    assert seen["full_syncs"] + seen["partial_syncs"] > 0  # the scenario exercised balancing


def _protocol_with_rows(rows, **protocol):
    n, width = rows.shape
    section = "{" + ", ".join(f"{k}: {v}" for k, v in {"name": "dynamic", **protocol}.items()) + "}"
    sim = Simulation.build(small_config(nodes=n, protocol=section))
    base = sim.population.params.matrix()
    base[:, :width] += rows  # every node = start model + its offset in the first coordinates
    sim.population.params.copy_from_matrix(base)
    return sim


def test_hand_scenario_partial_sync():
    # r = start; offsets: +2 and -2 (squared distance 4 > delta 1), two nodes at r.
    rows = torch.tensor([[2.0], [-2.0], [0.0], [0.0]])
    sim = _protocol_with_rows(rows, delta=1.0)
    start = sim.protocol.reference.matrix()[0]
    stats = sim.protocol.communicate(0)
    assert (stats["violations"], stats["partial_syncs"], stats["full_syncs"]) == (2, 1, 0)
    # 2 uploads + 2 downloads of the average (= r), no request
    model = sim.network.message_bytes
    assert sim.ledger.totals()["messages"] == 4 and sim.ledger.totals()["bytes_sent"] == 4 * model
    assert torch.allclose(sim.population.params.matrix(), start.expand(4, -1))
    assert torch.equal(sim.protocol.reference.matrix()[0], start)  # partial: r unchanged


def test_hand_scenario_full_sync_after_failed_balancing():
    # 6 nodes, one violator at +2: its own average is 4 > 1 away; adding 2|B| = 2 nodes
    # would make 3 = half of 6, which triggers a full sync (the published code's >= N/2)
    rows = torch.tensor([[2.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    sim = _protocol_with_rows(rows, delta=1.0)
    start = sim.protocol.reference.matrix()[0]
    stats = sim.protocol.communicate(0)
    assert (stats["violations"], stats["full_syncs"], stats["requested"]) == (1, 1, 5)
    model = sim.network.message_bytes
    totals = sim.ledger.totals()
    assert totals["messages"] == 1 + 5 + 5 + 6  # violation, 5 requests, 5 uploads, 6 downloads
    assert totals["bytes_sent"] == (1 + 5 + 6) * model + 5 * HEADER_BYTES
    expected = start.clone()
    expected[0] += 2.0 / 6  # the average of +2 and five zeros
    assert torch.allclose(sim.population.params.matrix(), expected.expand(6, -1))
    assert torch.allclose(sim.protocol.reference.matrix()[0], expected)  # new reference


def test_hand_scenario_one_node_augmentation_then_partial_sync():
    # r = start; node 0 at +1.5 violates (2.25 > 1); the others at -0.9 do not (0.81).
    # Node 0 alone averages 2.25 away; with any one requested node: (1.5 - 0.9) / 2 = 0.3,
    # 0.09 <= 1: a partial sync of the two.
    rows = torch.tensor([[1.5]] + [[-0.9]] * 7)
    sim = _protocol_with_rows(rows, delta=1.0, augmentation="one", full_sync_fraction=1.0)
    stats = sim.protocol.communicate(0)
    assert (stats["violations"], stats["requested"], stats["partial_syncs"]) == (1, 1, 1)
    model = sim.network.message_bytes
    assert sim.ledger.totals()["messages"] == 1 + 1 + 1 + 2  # up, request, up, 2 down
    assert sim.ledger.totals()["bytes_sent"] == 4 * model + HEADER_BYTES
    offset = sim.population.params.matrix()[:, 0] - sim.protocol.reference.matrix()[0, 0]
    assert torch.allclose(offset.sort().values, torch.tensor([-0.9] * 6 + [0.3] * 2), atol=1e-5)


def test_delta_zero_period_one_is_continuous_averaging():
    dynamic = gossamer.run(small_config(protocol="{name: dynamic, delta: 0.0, period: 1}"))
    periodic = gossamer.run(small_config(protocol="{name: periodic, period: 1}"))
    assert_same_learning(dynamic, periodic)
    assert dynamic.totals == periodic.totals
    assert dynamic.rounds["full_syncs"].tolist() == [1, 1, 1, 1]


def test_huge_delta_is_nosync_with_zero_messages():
    dynamic = gossamer.run(small_config(protocol="{name: dynamic, delta: 1.0e12}"))
    local = gossamer.run(small_config(protocol="nosync"))
    assert_same_learning(dynamic, local)
    assert dynamic.totals["messages"] == 0 and dynamic.totals == local.totals


def test_dynamic_gossip_with_delta_zero_is_dpsgd():
    gossip = gossamer.run(small_config(protocol="{name: dynamic_gossip, delta: 0.0}"))
    dpsgd = gossamer.run(small_config(protocol="dpsgd"))
    assert_same_learning(gossip, dpsgd)
    assert gossip.totals == dpsgd.totals


def test_dynamic_gossip_matches_loop_and_counts_only_senders():
    config = small_config(
        **{
            "nodes": 6,
            "protocol": "{name: dynamic_gossip, delta: 0.01, consensus_step: 0.5}",
            "topology.kind": "ring",
        }
    )
    sim = Simulation.build(config)
    w = torch.tensor(sim.topology.dense(), dtype=torch.float32)
    neighbours = [sorted(sim.topology.graph.neighbors(i)) for i in range(6)]
    last_sent = sim.population.params.matrix()
    model = sim.network.message_bytes
    for t in range(6):
        sim.population.train(1, round=t)
        x = sim.population.params.matrix()
        sent = [float(((x[i] - last_sent[i]) ** 2).sum()) > 0.01 for i in range(6)]
        for i in range(6):
            if sent[i]:
                last_sent[i] = x[i]
        expected = torch.stack(
            [
                x[i] + 0.5 * sum(w[i, j] * (last_sent[j] - last_sent[i]) for j in neighbours[i])
                for i in range(6)
            ]
        )
        before = sim.ledger.node["bytes_received"].copy()
        stats = sim.protocol.communicate(t)
        assert stats["senders"] == sum(sent)
        received = sim.ledger.node["bytes_received"] - before
        assert received.tolist() == [model * sum(sent[j] for j in neighbours[i]) for i in range(6)]
        torch.testing.assert_close(sim.population.params.matrix(), expected, rtol=1e-5, atol=1e-6)


def test_dynamic_gossip_preserves_the_network_mean():
    sim = Simulation.build(
        small_config(
            **{
                "nodes": 8,
                "protocol": "{name: dynamic_gossip, delta: 0.02}",
                "topology.kind": "ring",
            }
        )
    )
    for t in range(5):
        sim.population.train(1, round=t)
        mean = sim.population.params.matrix().double().mean(0)
        sim.protocol.communicate(t)
        assert torch.allclose(sim.population.params.matrix().double().mean(0), mean, atol=1e-6)


def test_suggest_delta_measures_the_distance_to_the_reference_by_check():
    """The calibration's divergence curve, by hand: training without communication,
    every model set to the mean every K = 1 / rate checks (a full sync), the largest
    squared distance to the last sync's mean recorded at each check."""
    from gossamer.workflow import suggest_delta

    config = small_config(protocol="{name: dynamic, period: 2}", rounds=40)
    suggestion = suggest_delta(config, periods=2, violation_rate=1 / 3)
    assert suggestion["checks_between_syncs"] == 3 and suggestion["period"] == 2
    sim = Simulation.build(small_config(protocol="nosync", rounds=40))
    curve, t = [], 0
    reference = sim.population.params.matrix()[:1].double()
    for _cycle in range(2):
        row = []
        for _check in range(3):
            for _ in range(2):
                sim.population.train(1, round=t)
                t += 1
            x = sim.population.params.matrix().double()
            row.append(float(((x - reference) ** 2).sum(1).max()))
        curve.append(row)
        mean = sim.population.params.matrix().double().mean(0, keepdim=True)
        sim.population.params.copy_from_matrix(mean.float())
        reference = mean.float().double()
    expected = np.sort(np.array(curve), axis=0)[0]  # the lower median of two cycles
    assert suggestion["divergence_median_by_check"] == pytest.approx(expected.tolist(), rel=1e-4)
    geometric = min(np.sqrt(c[1] * c[2]) for c in curve)
    assert suggestion["delta_from_divergence"] == pytest.approx(geometric, rel=1e-4)
    # then tuned on the protocol itself: its calibration runs hit the target within 2x
    assert 0.5 <= suggestion["calibration_violation_rate"] / (1 / 3) <= 2
    with pytest.raises(ConfigError, match="violation_rate, budget: give one target"):
        suggest_delta(config, violation_rate=0.1, budget=0.1)
    with pytest.raises(ConfigError, match=r"budget: expected a share in \(0, 1\]; got 2"):
        suggest_delta(config, budget=2)


@pytest.mark.parametrize("protocol", ["{name: dynamic, delta: 0.1}", "dynamic_gossip"])
def test_the_start_model_is_taken_by_value_not_from_a_row(protocol):
    """On rank r > 0 the population's first row is node lo's, not node 0's: the
    reference (dynamic) and the public models (dynamic_gossip) start from the common
    start model, which every rank holds alike (docs/architecture.md, sharding)."""
    sim = Simulation.build(small_config(protocol=protocol))
    start = sim.model.initial_params(sim.config.seed)  # (P,) what every node starts with
    assert torch.equal(sim.population.start.matrix()[0], start)
    for block in sim.population.params.blocks:
        block[0].add_(1.0)  # row 0 is no longer the start model (as after training)
    sim.network._start = sim.population.params.rows(0, 1).clone()  # nor the network's copy
    again = type(sim.protocol)(sim.config.protocol, sim.protocol.context)
    held = again.reference if protocol.startswith("{") else sim.network.public
    assert torch.equal(held.matrix()[0], start)
