"""Streams with prequential evaluation, and concept drift."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gossamer
from conftest import small_config
from gossamer.config import ConfigError, DriftConfig
from gossamer.sim import Simulation
from gossamer.sim.data import ConceptShift, drift_schedule, sample_batch_indices
from reference import LoopPopulation


def test_fixed_schedule_affects_everyone_at_the_given_rounds():
    events = drift_schedule(DriftConfig(kind="label_permutation", at_rounds=[7, 3]), 5, 10, 0)
    assert [(e.round, e.concept, e.nodes.tolist()) for e in events] == [
        (3, 1, [True] * 5),
        (7, 2, [True] * 5),
    ]


def test_random_schedule_is_seeded_and_has_the_configured_rate():
    config = DriftConfig(kind="input_rotation", probability=0.1, fraction=0.25)
    a = drift_schedule(config, 40, 2000, seed=1)
    b = drift_schedule(config, 40, 2000, seed=1)
    c = drift_schedule(config, 40, 2000, seed=2)
    assert [e.round for e in a] == [e.round for e in b] != [e.round for e in c]
    assert all(np.array_equal(x.nodes, y.nodes) for x, y in zip(a, b, strict=True))
    assert 150 < len(a) < 250  # ~ 0.1 x 1999 rounds
    assert all(e.nodes.sum() == 10 and e.round >= 2 for e in a)  # 25% of 40 nodes
    assert len({tuple(e.nodes) for e in a}) > 1  # different nodes each time


def test_bad_drift_config_names_the_key():
    with pytest.raises(
        ConfigError, match="data.drift: value error, kind 'label_permutation' never"
    ):
        small_config(**{"data.drift": "{kind: label_permutation}"})
    with pytest.raises(ConfigError, match=r"data.drift.at_rounds: expected rounds up to rounds"):
        small_config(**{"data.drift": "{kind: label_permutation, at_rounds: [9]}"})


def test_label_permutation_moves_every_class_and_applies_per_node_concept():
    shift = ConceptShift(DriftConfig(kind="label_permutation", at_rounds=[1]), 3, 5, (4,), 0, "cpu")
    for c in (1, 2):
        assert not (shift.permutations[c] == torch.arange(5)).any()
        assert sorted(shift.permutations[c].tolist()) == list(range(5))
    x, y = torch.randn(3, 6, 4), torch.randint(5, (3, 6))
    concept = torch.tensor([0, 2, 1])
    _, relabelled = shift.apply(x, y, concept)
    for node in range(3):  # loop reference: each node's labels through its own concept
        expected = [int(shift.permutations[concept[node]][label]) for label in y[node]]
        assert relabelled[node].tolist() == expected
    _, test_labels = shift.apply_shared(x[0], y[0], 2)
    assert test_labels.tolist() == [int(shift.permutations[2][label]) for label in y[0]]


def test_input_rotation_of_images_and_vectors():
    images = ConceptShift(
        DriftConfig(kind="input_rotation", at_rounds=[1]), 3, 2, (1, 4, 4), 0, "cpu"
    )
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).view(2, 3, 1, 4, 4)
    rotated, _ = images.apply(x, torch.zeros(2, 3, dtype=torch.long), torch.tensor([1, 2]))
    assert torch.equal(rotated[0], torch.rot90(x[0], 1, dims=(-2, -1)))  # 90 degrees
    assert torch.equal(rotated[1], torch.rot90(x[1], 2, dims=(-2, -1)))  # 180 degrees
    vectors = ConceptShift(DriftConfig(kind="input_rotation", at_rounds=[1]), 2, 2, (6,), 0, "cpu")
    q = vectors.rotations[1]
    assert torch.allclose(q @ q.T, torch.eye(6), atol=1e-5)  # a rotation: norms preserved
    v = torch.randn(1, 4, 6)
    moved, _ = vectors.apply(v, torch.zeros(1, 4, dtype=torch.long), torch.tensor([1]))
    assert torch.allclose(moved.norm(dim=-1), v.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(moved, v)
    odd = ConceptShift(
        DriftConfig(kind="input_rotation", at_rounds=[1], angle=45), 2, 2, (1, 9, 9), 0, "cpu"
    )
    bar = torch.zeros(1, 1, 9, 9)
    bar[..., 4, 1:8] = 1.0  # a horizontal bar through the centre
    turned = odd.apply_shared(bar, torch.zeros(1), 1)[0][0, 0]
    diagonals = torch.eye(9, dtype=torch.bool) | torch.eye(9, dtype=torch.bool).flip(1)
    row = torch.zeros(9, 9, dtype=torch.bool)
    row[4] = True
    assert turned[diagonals & ~row].sum() > 3 * turned[row & ~diagonals].sum()
    assert float(turned.sum()) == pytest.approx(float(bar.sum()), rel=0.15)  # bilinear


def test_prequential_sums_equal_loop_of_pre_update_losses():
    config = small_config(
        **{"data.stream": "true", "protocol": "nosync", "rounds": 3, "eval_every": 1, "nodes": 4}
    )
    result = gossamer.run(config)
    sim = Simulation.build(config)
    loop = LoopPopulation(sim.model.template, sim.population.params.matrix(), config.optimizer)
    total_loss = total_error = 0.0
    batch = config.data.batch_size
    for t in range(3):
        for i in range(4):
            idx = sample_batch_indices(
                sim.node_data, torch.tensor([i]), torch.tensor([t * batch]), batch, config.seed
            )[0]
            x, y = sim.dataset.x_train[idx], sim.dataset.y_train[idx]
            with torch.no_grad():
                total_error += float((loop.modules[i](x).argmax(1) != y).float().mean())
            total_loss += loop.step(i, x, y)  # loss before the step: prequential
    assert result.final["cumulative_prequential_loss"] == pytest.approx(total_loss, rel=1e-5)
    assert result.final["cumulative_prequential_error"] == pytest.approx(total_error, rel=1e-6)
    assert np.allclose(
        np.cumsum(result.rounds["prequential_loss"]), result.rounds["cumulative_prequential_loss"]
    )
    assert (
        result.metrics["cumulative_prequential_loss"][-1]
        == result.final["cumulative_prequential_loss"]
    )


def test_drift_switches_training_and_evaluation_to_the_new_concept():
    config = small_config(
        **{
            "data.stream": "true",
            "rounds": 40,
            "eval_every": 1,
            "nodes": 4,
            "protocol": "{name: periodic, period: 1}",
            "optimizer.lr": 0.5,
            "data.drift": "{kind: label_permutation, at_rounds: [21]}",
            "data.synthetic.separation": 8.0,
        }
    )
    result = gossamer.run(config)
    accuracy = result.metrics["test_accuracy_mean"]  # index = rounds done
    loss = result.rounds["prequential_loss"]  # index = round - 1
    assert accuracy[20] > 0.9  # learned concept 0
    assert accuracy[21] < accuracy[20] - 0.3  # tested on concept 1 right after the drift
    assert loss[20] > 10 * loss[19]  # round 21's stream follows concept 1: a prequential spike
    assert accuracy[40] > 0.9  # and the new concept is learned
    assert result.rounds["drift_nodes"][20] == 4 and result.rounds["drift_nodes"].sum() == 4
    assert result.summary["drift"] == [{"round": 21, "concept": 1, "nodes": 4}]
    assert result.nodes["concept"].tolist() == [1, 1, 1, 1]


def test_partial_drift_evaluates_each_node_under_its_own_concept():
    config = small_config(
        **{
            "nodes": 6,
            "rounds": 2,
            "eval_every": 1,
            "protocol": "nosync",
            "data.drift": "{kind: label_permutation, at_rounds: [2], fraction: 0.5}",
        }
    )
    sim = Simulation.build(config)
    sim.step(0)
    sim.step(1)
    concept = sim.population.state.concept
    assert sorted(concept.tolist()) == [0, 0, 0, 1, 1, 1]
    loss, accuracy = sim.population.evaluate()
    from reference import loop_evaluate

    rows = sim.population.params.matrix()
    for i in range(6):  # loop reference: node i on the test set under its own concept
        x, y = sim.population.shift.apply_shared(
            sim.dataset.x_test, sim.dataset.y_test, int(concept[i])
        )
        ref_loss, ref_accuracy = loop_evaluate(sim.model.load_row(rows[i]), x, y)
        assert loss[i].item() == pytest.approx(ref_loss, rel=1e-5)
        assert accuracy[i].item() == pytest.approx(ref_accuracy)
