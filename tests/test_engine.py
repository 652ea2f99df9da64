"""The stacked population against per-node loops: training with masks, averaging."""

from __future__ import annotations

import pytest
import torch

from conftest import small_config
from gossamer.sim import Simulation
from gossamer.sim.data import sample_batch_indices
from reference import LoopPopulation


def _loop_reference(sim):
    pop = sim.population
    return LoopPopulation(sim.model.template, pop.params.matrix(), sim.config.optimizer)


def _loop_train(sim, loop, cursor, mask, steps):
    """Each node draws its own batch (one sampler call per node) and steps its module.

    Returns each node's batch losses (before each step).
    """
    data = sim.dataset
    losses = [[] for _ in range(sim.config.nodes)]
    for _ in range(steps):
        for i in range(sim.config.nodes):
            if mask is not None and not mask[i]:
                continue
            idx = sample_batch_indices(
                sim.node_data,
                torch.tensor([i]),
                cursor[i : i + 1],
                sim.config.data.batch_size,
                sim.config.seed,
            )[0]
            losses[i].append(loop.step(i, data.x_train[idx], data.y_train[idx]))
            cursor[i] += sim.config.data.batch_size
    return losses


SGD_MOMENTUM = {"optimizer.momentum": 0.9, "optimizer.weight_decay": 0.01}
ADAMW = {"optimizer": "{name: adamw, lr: 0.01, weight_decay: 0.05}"}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("chunk", [0, 4])
@pytest.mark.parametrize("optimizer", [SGD_MOMENTUM, ADAMW], ids=["sgd", "adamw"])
def test_masked_training_matches_loop_and_leaves_skipped_nodes_untouched(model, chunk, optimizer):
    """Skipped nodes stay bit-identical, optimizer state included: an AdamW node that
    skips keeps its own step count (bias correction), as its own torch.optim.AdamW."""
    overrides = {"engine.node_chunk": chunk, **optimizer}
    if model == "cnn":
        overrides.update(
            {
                "model": "{name: cnn, channels: [3], hidden: 5}",
                "data.dataset": "digits",
                "nodes": 7,
                "data.partition": "dirichlet",
            }
        )
    sim = Simulation.build(small_config(**overrides))
    loop = _loop_reference(sim)
    cursor = torch.zeros(sim.config.nodes, dtype=torch.int64)
    masks = [
        None,
        torch.tensor([1, 0, 1, 1, 0, 1] + [0] * (sim.config.nodes - 6), dtype=torch.bool),
        torch.zeros(sim.config.nodes, dtype=torch.bool),
    ]
    for mask in masks:
        before = sim.population.params.matrix()
        stats = sim.population.train(2, mask, round=0)
        losses = _loop_train(sim, loop, cursor, mask, 2)
        trained = torch.ones(sim.config.nodes, dtype=torch.bool) if mask is None else mask
        expected = torch.tensor(
            [sum(losses[i]) / 2 if trained[i] else float("nan") for i in range(sim.config.nodes)],
            dtype=torch.float64,
        )
        torch.testing.assert_close(stats.loss, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
        assert torch.isnan(stats.error[~trained]).all()
        assert ((stats.error[trained] >= 0) & (stats.error[trained] <= 1)).all()
        if mask is not None:
            after = sim.population.params.matrix()
            assert torch.equal(after[~mask], before[~mask])  # bit-identical
        if optimizer is ADAMW:  # each node's own count of the steps it took
            counts = [loop.optimizers[i].state_dict()["state"] for i in range(len(loop.optimizers))]
            steps = [int(c[0]["step"]) if c else 0 for c in counts]
            assert sim.population.state.optimizer.count.tolist() == steps
    torch.testing.assert_close(sim.population.params.matrix(), loop.rows(), rtol=1e-5, atol=2e-6)
    assert torch.equal(sim.population.state.cursor, cursor)


def test_periodic_with_period_one_is_centralized_sgd_on_the_union_of_batches():
    config = small_config(**{"protocol": "{name: periodic, period: 1}", "rounds": 5, "nodes": 4})
    sim = Simulation.build(config)
    start = sim.population.params.matrix()[:1]
    central = LoopPopulation(sim.model.template, start, config.optimizer)
    batch = config.data.batch_size
    for t in range(config.rounds):
        cursor = torch.full((4,), t * batch)
        idx = sample_batch_indices(sim.node_data, torch.arange(4), cursor, batch, config.seed)
        union = idx.flatten()  # N x B samples, one mini-batch of the centralized run
        central.step(0, sim.dataset.x_train[union], sim.dataset.y_train[union])
        sim.step(t)
    final = sim.population.params.matrix()
    for i in range(4):
        torch.testing.assert_close(final[i], central.rows()[0], rtol=1e-5, atol=1e-6)


def test_evaluation_matches_loop_over_modules():
    sim = Simulation.build(small_config())
    sim.population.train(3, round=0)
    loss, accuracy = sim.population.evaluate()
    from reference import loop_evaluate

    rows = sim.population.params.matrix()
    for i in range(sim.config.nodes):
        module = sim.model.load_row(rows[i])
        ref_loss, ref_acc = loop_evaluate(module, sim.dataset.x_test, sim.dataset.y_test)
        assert loss[i].item() == pytest.approx(ref_loss, rel=1e-5)
        assert accuracy[i].item() == pytest.approx(ref_acc)


def test_consensus_distance_by_hand():
    sim = Simulation.build(small_config(nodes=3))
    matrix = torch.zeros(3, sim.model.num_params)
    matrix[0, 0], matrix[1, 0], matrix[2, 0] = 1.0, 2.0, 6.0  # mean 3: (4 + 1 + 9) / 3
    matrix[0, -1], matrix[1, -1] = 1.0, -1.0  # last parameter: mean 0, (1 + 1 + 0) / 3
    sim.population.params.copy_from_matrix(matrix)
    assert sim.population.consensus_distance() == pytest.approx(16 / 3)


def test_all_nodes_start_from_the_same_seeded_model():
    a = Simulation.build(small_config()).population.params.matrix()
    b = Simulation.build(small_config()).population.params.matrix()
    c = Simulation.build(small_config(seed=4)).population.params.matrix()
    assert torch.equal(a, b) and (a == a[0]).all() and not torch.equal(a, c)


def test_automatic_node_chunk_bounds_activations():
    from gossamer.sim.engine import (
        _GPU_TRAIN_ACTIVATION_BUDGET,
        _TRAIN_ACTIVATION_BUDGET,
        auto_chunk,
    )
    from gossamer.sim.models import build_model

    mlp = build_model(small_config(**{"model.hidden": "[200]"}).model, (784,), 10)
    cnn = build_model(small_config(model="{name: cnn}").model, (1, 28, 28), 10)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert auto_chunk(mlp, 256, 32, cpu) == 256  # 32 x 210 floats per node: no chunking
    per_node = 32 * cnn.activations_per_sample()
    assert per_node == 32 * (16 * 28 * 28 + 32 * 14 * 14 + 32 * 7 * 7 + 64 + 10)
    assert auto_chunk(cnn, 256, 32, cpu) == _TRAIN_ACTIVATION_BUDGET // per_node
    assert auto_chunk(cnn, 256, 32, cuda) == 256  # 168 M floats: within the GPU's bound
    resnet = build_model(small_config(model="{name: resnet20}").model, (3, 32, 32), 10)
    per_node = 32 * resnet.activations_per_sample()
    assert auto_chunk(resnet, 4096, 32, cuda) == _GPU_TRAIN_ACTIVATION_BUDGET // per_node == 89


def test_evaluation_chunking_does_not_change_metrics():
    whole = Simulation.build(small_config())
    pieces = Simulation.build(small_config(**{"engine.eval_batch": 7, "engine.node_chunk": 4}))
    for sim in (whole, pieces):
        sim.population.train(2, round=0)
    for a, b in zip(whole.population.evaluate(), pieces.population.evaluate(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_tf32_on_a_cpu_warns_and_computes_in_float32():
    """TF32 is a CUDA precision: on a CPU the run says so and is the float32 run."""
    with pytest.warns(UserWarning, match="'tf32' is a CUDA precision"):
        tf32 = Simulation.build(small_config(**{"engine.precision": "tf32"}))
    fp32 = Simulation.build(small_config())
    for sim in (tf32, fp32):
        sim.population.train(3, round=0)
    assert not tf32.population.tf32
    assert torch.equal(tf32.population.params.matrix(), fp32.population.params.matrix())


def test_bf16_warns_where_the_cpu_has_no_native_bf16(monkeypatch):
    """AVX2-only CPUs emulate bf16 (LeNet 10x slower than in float32): say so at start."""
    import warnings

    from gossamer.sim import engine

    overrides = {
        "model": "{name: cnn, channels: [3], hidden: 5}",
        "data.dataset": "digits",
        "engine.precision": "bfloat16",
    }
    monkeypatch.setattr(engine, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="without native bf16"):
        Simulation.build(small_config(**overrides))
    monkeypatch.setattr(engine, "native_bf16", lambda device: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Simulation.build(small_config(**overrides))


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    from gossamer.sim import engine

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(engine, "Path", lambda _: cpuinfo)
    cpuinfo.write_text("flags : fpu sse avx2 fma\n")
    assert not engine.native_bf16(torch.device("cpu"))
    cpuinfo.write_text("flags : fpu avx2 avx512f avx512_bf16\n")
    assert engine.native_bf16(torch.device("cpu"))
