"""Sampled evaluations (``eval:``): a stratified test subset, a node sample, the initial
evaluation, and the interval reported on the mean accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gossamer
from conftest import small_config, stop_at
from gossamer.config import ConfigError
from gossamer.sim import EVAL_COLUMNS, Simulation
from gossamer.sim.evaluation import mean_accuracy_ci95, node_sample, stratified_subset
from gossamer.sim.rng import Purpose, hash32
from reference import LoopPopulation

SAMPLED = {"nodes": 12, "rounds": 6, "eval_every": 2, "data.synthetic.samples": 600}


def test_stratified_subset_takes_each_class_its_share():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    chosen = stratified_subset(labels, 5, seed=4)
    # shares 2.5, 1.5, 1.0: floors 2, 1, 1 and the one left to the largest remainder
    # (0.5 for classes 0 and 1: the first in class order)
    assert np.bincount(labels[chosen].numpy()).tolist() == [3, 1, 1]
    assert torch.equal(chosen, torch.sort(chosen).values)
    keys = hash32(4, Purpose.EVALUATION, torch.arange(10))
    for c, k in ((0, 3), (1, 1), (2, 1)):
        members = (labels == c).nonzero().squeeze(1)
        smallest = members[torch.argsort(keys[members])[:k]]
        assert set(smallest.tolist()) == set(chosen[labels[chosen] == c].tolist())
    assert torch.equal(stratified_subset(labels, 10, 4), torch.arange(10))
    assert not torch.equal(stratified_subset(labels, 5, 5), chosen)  # the seed decides


def test_node_sample_is_keyed_by_the_round():
    a, b = node_sample(50, 7, seed=1, round=10), node_sample(50, 7, seed=1, round=20)
    assert int(a.sum()) == int(b.sum()) == 7 and not torch.equal(a, b)
    assert torch.equal(a, node_sample(50, 7, seed=1, round=10))
    assert bool(node_sample(50, 0, seed=1, round=10).all())


def test_interval_by_hand():
    accuracy = np.array([0.5, 0.7, 0.6, 0.8])
    nodes = np.var(accuracy, ddof=1) / 4 * (1 - 4 / 10)
    test = 0.65 * 0.35 / 100 * (1 - 100 / 400)
    assert mean_accuracy_ci95(accuracy, 10, 100, 400) == pytest.approx(
        1.96 * np.sqrt(nodes + test), rel=1e-12
    )
    assert mean_accuracy_ci95(accuracy, 4, 400, 400) == 0.0


def test_a_sampled_evaluation_measures_what_a_per_node_loop_measures():
    """Mid-run rows: the sampled nodes' own models on the stratified subset, evaluated
    as plain nn.Modules; the final row: every node on the whole test set."""
    config = small_config(**SAMPLED, **{"eval.nodes": 5, "eval.test_samples": 40})
    sim = Simulation.build(config)
    rows = {}
    for t in range(config.rounds):
        sim.step(t)
        if sim.due_for_evaluation():
            nodes, test = sim.evaluation_sample()
            loop = LoopPopulation(
                sim.model.template, sim.population.params.matrix(), config.optimizer
            )
            x, y = test if test is not None else (sim.dataset.x_test, sim.dataset.y_test)
            chosen = nodes.nonzero().squeeze(1).tolist() if nodes is not None else range(12)
            with torch.no_grad():
                accuracy = [
                    float((loop.modules[i](x).argmax(-1) == y).double().mean()) for i in chosen
                ]
                loss = [float(F.cross_entropy(loop.modules[i](x), y)) for i in chosen]
            rows[sim.next_round] = (sim.evaluate(0.0), accuracy, loss, len(y))
    assert sorted(rows) == [2, 4, 6]
    for done, (row, accuracy, loss, measured) in rows.items():
        final = done == config.rounds
        assert row["evaluated_nodes"] == (12 if final else 5)
        assert (
            row["evaluated_test_samples"] == measured == (len(sim.dataset.y_test) if final else 40)
        )
        assert row["test_accuracy_mean"] == pytest.approx(np.mean(accuracy), abs=1e-12)
        assert row["test_accuracy_min"] == pytest.approx(min(accuracy), abs=1e-12)
        assert row["test_loss_mean"] == pytest.approx(np.mean(loss), rel=1e-5)
        assert (row["test_accuracy_mean_ci95"] == 0.0) == final
    labels = sim.dataset.y_test[stratified_subset(sim.dataset.y_test, 40, config.seed)]
    full = torch.bincount(sim.dataset.y_test, minlength=3) * 40 / len(sim.dataset.y_test)
    assert (torch.bincount(labels, minlength=3) - full).abs().max() < 1  # stratified


def test_sampling_changes_no_training_and_the_final_row_is_exact():
    full = gossamer.run(small_config(**SAMPLED))
    sampled = gossamer.run(small_config(**SAMPLED, **{"eval.nodes": 4, "eval.test_samples": 30}))
    for key in ("test_accuracy_mean", "avg_model_accuracy", "test_loss_mean"):
        assert full.metrics[key][-1] == sampled.metrics[key][-1]  # everything, at the end
    assert np.array_equal(full.metrics["consensus_distance"], sampled.metrics["consensus_distance"])
    assert np.array_equal(full.nodes["test_accuracy"], sampled.nodes["test_accuracy"])
    assert set(EVAL_COLUMNS) <= set(sampled.metrics) and not set(EVAL_COLUMNS) & set(full.metrics)
    assert sampled.summary["evaluation"]["nodes"] == 4
    assert full.summary["evaluation"]["test_samples"] == len(
        Simulation.build(small_config(**SAMPLED)).dataset.y_test
    )


def test_the_interval_covers_the_full_evaluation():
    """Over the evaluations of a run, the full evaluation's mean accuracy lies within
    the sampled one's 95% interval nearly every time."""
    base = {**SAMPLED, "nodes": 40, "rounds": 40, "eval_every": 1, "data.synthetic.samples": 4000}
    full = gossamer.run(small_config(**base))
    sampled = gossamer.run(small_config(**base, **{"eval.nodes": 10, "eval.test_samples": 200}))
    inside = np.abs(sampled.metrics["test_accuracy_mean"] - full.metrics["test_accuracy_mean"])
    inside = inside <= sampled.metrics["test_accuracy_mean_ci95"] + 1e-12
    assert inside[:-1].mean() >= 0.85, inside  # nominal 95%, over 40 evaluations
    assert sampled.metrics["test_accuracy_mean_ci95"][:-1].min() > 0


def test_no_initial_evaluation_when_asked(tmp_path):
    result = gossamer.run(small_config(**SAMPLED, **{"eval.initial": "false"}))
    assert result.metrics["round"].tolist() == [2, 4, 6]


def test_sampling_more_than_there_is_is_refused():
    with pytest.raises(
        ConfigError, match="eval.nodes: expected 0 .* or 2 to nodes \\(12\\); got 13"
    ):
        small_config(**SAMPLED, **{"eval.nodes": 13})
    with pytest.raises(ConfigError, match="eval.test_samples: expected at most the"):
        gossamer.run(small_config(**SAMPLED, **{"eval.test_samples": 10**6}))


def test_a_resumed_sampled_run_equals_an_uninterrupted_one(tmp_path):
    config = small_config(**SAMPLED, **{"eval.nodes": 4, "eval.test_samples": 30})
    whole = gossamer.run(config)
    with pytest.raises(gossamer.RunInterrupted):
        gossamer.run(config, out=tmp_path / "run", progress=stop_at(3))
    resumed = gossamer.resume(tmp_path / "run")
    for key in ("test_accuracy_mean", "test_accuracy_mean_ci95", "avg_model_loss"):
        assert np.array_equal(whole.metrics[key], resumed.metrics[key]), key


def test_under_drift_the_final_evaluation_is_still_exact():
    drift = {**SAMPLED, "data.drift": "{kind: label_permutation, at_rounds: [3]}"}
    full = gossamer.run(small_config(**drift))
    sampled = gossamer.run(small_config(**drift, **{"eval.nodes": 4, "eval.test_samples": 30}))
    for key in ("test_accuracy_mean", "test_loss_mean", "avg_model_accuracy"):
        assert full.metrics[key][-1] == sampled.metrics[key][-1], key
    assert np.array_equal(full.nodes["test_accuracy"], sampled.nodes["test_accuracy"])


def test_one_sampled_node_is_refused():
    with pytest.raises(ConfigError, match="eval.nodes: expected 0 \\(every node\\) or 2 to"):
        small_config(**SAMPLED, **{"eval.nodes": 1})
