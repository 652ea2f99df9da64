"""SkipTrain, SkipTrain-constrained and greedy against plain per-node loops."""

from __future__ import annotations

import pytest
import torch

import gossamer
from conftest import assert_same_learning, small_config
from gossamer.config import ConfigError
from gossamer.sim import Simulation
from gossamer.sim.protocols.skiptrain import is_training_round
from gossamer.sim.rng import Purpose, uniform


def test_schedule_by_hand():
    assert [is_training_round(t, 2, 3) for t in range(10)] == [True, True, False, False, False] * 2
    assert all(is_training_round(t, 1, 0) for t in range(5))


def test_sync_rounds_zero_is_dpsgd():
    skip = gossamer.run(small_config(protocol="{name: skiptrain, train_rounds: 3, sync_rounds: 0}"))
    dpsgd = gossamer.run(small_config(protocol="dpsgd"))
    assert_same_learning(skip, dpsgd)
    assert skip.totals == dpsgd.totals


def test_skiptrain_trains_only_in_training_rounds_and_gossips_every_round():
    result = gossamer.run(
        small_config(
            rounds=6, eval_every=3, protocol="{name: skiptrain, train_rounds: 1, sync_rounds: 2}"
        )
    )
    assert result.rounds["local_steps"].tolist() == [6, 0, 0, 6, 0, 0]
    assert result.rounds["messages"].tolist() == [12] * 6  # ring of 6: 2 messages per node


def _loop_masks(budget, probability, rounds, train_rounds, sync_rounds, seed, greedy=False):
    """Reference: each node alone, with its own budget, as the published node does."""
    masks = []
    remaining = list(budget)
    for t in range(rounds):
        row = []
        for i in range(len(budget)):
            if greedy:
                train = remaining[i] > 0
            else:
                slot = t % (train_rounds + sync_rounds) < train_rounds
                draw = float(uniform(seed, Purpose.PROTOCOL, t, i))
                train = slot and remaining[i] > 0 and draw < probability[i]
            remaining[i] -= int(train)
            row.append(train)
        masks.append(row)
    return masks, remaining


@pytest.mark.parametrize("greedy", [False, True])
def test_budgets_and_probabilities_match_per_node_loop(greedy):
    section = (
        "greedy" if greedy else "{name: skiptrain_constrained, train_rounds: 2, sync_rounds: 1}"
    )
    config = small_config(nodes=8, rounds=30, protocol=section, **{"energy.battery_fraction": 4e-8})
    sim = Simulation.build(config)
    budget = sim.protocol.context.energy.budget_rounds.tolist()
    assert 0 < min(budget) < max(budget) < 30  # budgets bind, and differ by device
    slots = 2 / 3 * 30
    probability = [min(b / slots, 1.0) for b in budget]
    expected, remaining = _loop_masks(budget, probability, 30, 2, 1, config.seed, greedy)
    for t in range(30):
        mask = sim.protocol.train_mask(t)
        assert mask.tolist() == expected[t], t
    assert sim.protocol.remaining.tolist() == remaining
    if not greedy:
        assert sim.protocol.probability.tolist() == pytest.approx(probability)


def test_budgeted_runs_spend_exactly_their_budget():
    config = small_config(
        nodes=8, rounds=30, eval_every=10, protocol="greedy", **{"energy.battery_fraction": 4e-8}
    )
    result = gossamer.run(config)
    assert result.nodes["local_steps"].tolist() == result.nodes["budget_rounds"].tolist()
    per_round = result.nodes["energy_joules"] / result.nodes["budget_rounds"]
    sim = Simulation.build(config)
    assert per_round == pytest.approx(sim.protocol.context.energy.joules_per_round)
    assert result.rounds["exhausted_nodes"][-1] == 8


def test_budgeted_protocols_need_energy():
    with pytest.raises(ConfigError, match="'greedy' needs energy budgets"):
        Simulation.build(small_config(protocol="greedy", **{"energy.enabled": "false"}))


def test_mask_draws_do_not_depend_on_node_chunking():
    a = gossamer.run(
        small_config(
            nodes=8, protocol="{name: skiptrain_constrained}", **{"energy.battery_fraction": 4e-8}
        )
    )
    b = gossamer.run(
        small_config(
            nodes=8,
            protocol="{name: skiptrain_constrained}",
            **{"energy.battery_fraction": 4e-8, "engine.node_chunk": 3},
        )
    )
    assert a.nodes["local_steps"].tolist() == b.nodes["local_steps"].tolist()
    assert torch.allclose(
        torch.tensor(a.metrics["test_loss_mean"]),
        torch.tensor(b.metrics["test_loss_mean"]),
        rtol=1e-5,
    )
