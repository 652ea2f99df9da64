"""The CUDA path against the CPU path: training, gossip, whole runs, resume, memory.

Marked ``cuda`` and skipped where no GPU is visible (CI has none): run them on a GPU
machine with ``pytest -m cuda`` (``benchmarks/gpu_check.sh`` does). The CPU path is the
reference, itself checked against per-node loops elsewhere; the tolerances say what
differs between the two devices' kernels (summation order, not the algorithm).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gossamer
from conftest import small_config, stop_at
from gossamer.config import load_config
from gossamer.sim import Simulation
from gossamer.sim.engine import cuda_settings
from gossamer.sim.models import build_model
from gossamer.sim.optim import SGDConfig, build_optimizer
from gossamer.sim.topology import Mixer, build_topology
from gossamer.workflow import RunInterrupted

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"),
]

CPU, GPU = torch.device("cpu"), torch.device("cuda")

MODELS = {  # key -> model section, input shape, classes
    "mlp": ({"name": "mlp", "hidden": [32]}, (20,), 5),
    "cnn": ({"name": "cnn", "channels": [4, 6], "hidden": 8}, (1, 12, 12), 5),
    "lenet": ({"name": "lenet"}, (3, 32, 32), 10),
    "femnist_cnn": ({"name": "femnist_cnn"}, (1, 28, 28), 62),
    "resnet20": ({"name": "resnet20", "groups": 4}, (3, 16, 16), 10),
}


def _one_step(key: str, device: torch.device, precision: str = "float32"):
    """Losses (n,) and updates (n, P) of one SGD-with-momentum step of 4 nodes, in the
    engine's ``precision`` (float32, tf32 or bfloat16)."""
    section, shape, classes = MODELS[key]
    model = build_model(load_config({"model": section}).model, shape, classes)
    if precision == "bfloat16" and model.uses_autocast:
        model.autocast_dtype = torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    rows = model.initial_params(0) + 0.02 * torch.randn(4, model.num_params, generator=gen)
    x = torch.randn(4, 8, *shape, generator=gen)
    y = torch.randint(classes, (4, 8), generator=gen)
    params = model.stack(rows.to(device))
    config = SGDConfig(lr=0.05, momentum=0.9, weight_decay=1e-3)
    optimizer = build_optimizer(config)
    state = optimizer.init(model.param_shapes, 4, device)
    tensors = params.tensors()
    with cuda_settings(device, tf32=precision == "tf32"):  # as the engine computes
        stats = model.train_step(
            tensors, x.to(device), y.to(device), optimizer.step(tensors, state, config.lr)
        )
    return stats.loss.cpu(), (params.matrix().cpu() - rows)


@pytest.mark.parametrize("key", list(MODELS))
def test_a_training_step_on_cuda_matches_the_cpu(key):
    """IEEE fp32 on both: losses to 1e-4, updates to 1e-3 of their norm. cuDNN and cuBLAS
    sum in other orders than oneDNN and MKL, and where that 1e-7 puts a pre-activation on
    the other side of a ReLU or max-pool tie a big CNN's update moves by up to 4e-4
    (measured between CPU kernels; tests/test_models.py). With TF32 allowed in cuDNN
    (PyTorch's default) LeNet and ResNet-20 differed by 1.3-1.6% on an H200."""
    loss_cpu, update_cpu = _one_step(key, CPU)
    loss_gpu, update_gpu = _one_step(key, GPU)
    torch.testing.assert_close(loss_gpu, loss_cpu, rtol=1e-4, atol=1e-5)
    assert float((update_gpu - update_cpu).norm() / update_cpu.norm()) < 1e-3


@pytest.mark.parametrize("key", ["lenet", "resnet20"])
def test_tf32_on_cuda_stays_near_fp32_and_differs_from_it(key):
    """TF32 keeps 10 bits of mantissa in matmul and convolution inputs: measurably not
    fp32 (so the option does something), and within 5% of its update. (The test's tiny
    MLP is left out: cuBLAS ran its 20-32-5 products without tensor cores, identical.)"""
    loss_fp32, update_fp32 = _one_step(key, GPU)
    loss_tf32, update_tf32 = _one_step(key, GPU, "tf32")
    torch.testing.assert_close(loss_tf32, loss_fp32, rtol=1e-2, atol=1e-3)
    difference = float((update_tf32 - update_fp32).norm() / update_fp32.norm())
    assert 1e-6 < difference < 5e-2


@pytest.mark.parametrize("key", ["lenet", "resnet20"])
def test_bf16_autocast_on_cuda_stays_near_fp32(key):
    """bf16 autocast (8 bits of mantissa) against the fp32 step, on the GPU."""
    loss_fp32, update_fp32 = _one_step(key, GPU)
    loss_bf16, update_bf16 = _one_step(key, GPU, "bfloat16")
    torch.testing.assert_close(loss_bf16, loss_fp32, rtol=2e-2, atol=1e-2)
    assert float((update_bf16 - update_fp32).norm() / update_fp32.norm()) < 0.1


def test_gossip_on_cuda_matches_the_cpu():
    config = load_config({"nodes": 64, "topology": {"kind": "regular", "degree": 6}})
    topology = build_topology(config.topology, 64, 0)
    x = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    mixed = {}
    for device in (CPU, GPU):
        blocks = [x[:, :700].clone().to(device), x[:, 700:].clone().to(device)]
        Mixer(topology, device).apply_(blocks)
        mixed[device.type] = torch.cat([b.cpu() for b in blocks], 1)
    torch.testing.assert_close(mixed["cuda"], mixed["cpu"], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(mixed["cuda"].mean(0), x.mean(0), rtol=1e-5, atol=1e-6)


PROTOCOLS = ["dpsgd", "skiptrain", "periodic", "dynamic", "dynamic_gossip", "nosync"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_whole_run_on_cuda_matches_the_cpu(protocol):
    """Same config on both devices: the same bytes, messages and local steps exactly, the
    learning curves to float tolerance (accuracy within one test sample in 1,000)."""
    overrides = {"protocol": protocol, "rounds": 12, "eval_every": 4, "nodes": 8}
    results = {
        device: gossamer.run(small_config(**overrides, device=device), out=None)
        for device in ("cpu", "cuda")
    }
    cpu, gpu = results["cpu"], results["cuda"]
    for key in ("bytes_sent", "messages", "local_steps", "energy_joules"):
        assert gpu.totals[key] == cpu.totals[key], key
    np.testing.assert_allclose(
        gpu.metrics["test_loss_mean"], cpu.metrics["test_loss_mean"], rtol=1e-4
    )
    np.testing.assert_allclose(
        gpu.metrics["test_accuracy_mean"], cpu.metrics["test_accuracy_mean"], atol=1e-3
    )


def test_a_tf32_run_on_cuda_learns_as_the_fp32_run():
    runs = [
        gossamer.run(small_config(device="cuda", **{"engine.precision": p}), out=None)
        for p in ("float32", "tf32")
    ]
    np.testing.assert_allclose(
        runs[1].metrics["test_loss_mean"], runs[0].metrics["test_loss_mean"], rtol=1e-2
    )


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_a_run_resumed_on_cuda_equals_the_uninterrupted_one(tmp_path, model):
    """Bit for bit with cuDNN's heuristic algorithms (engine.autotune false); with
    autotune to float rounding (cuDNN may time another algorithm fastest)."""
    section = "{name: cnn, channels: [3], hidden: 5}" if model == "cnn" else "{name: mlp}"
    overrides = {"optimizer.momentum": 0.5, "model": section, "data.dataset": "digits"}
    for autotune in (False, True):
        config = small_config(
            device="cuda", rounds=20, eval_every=5, **overrides, **{"engine.autotune": autotune}
        )
        whole = gossamer.run(config, out=tmp_path / f"whole{autotune}")
        with pytest.raises(RunInterrupted):
            gossamer.run(config, out=tmp_path / f"cut{autotune}", progress=stop_at(9))
        resumed = gossamer.resume(tmp_path / f"cut{autotune}")
        for key in ("test_accuracy_mean", "test_loss_mean", "consensus_distance"):
            if autotune:
                np.testing.assert_allclose(resumed.metrics[key], whole.metrics[key], rtol=1e-4)
            else:
                assert np.array_equal(resumed.metrics[key], whole.metrics[key]), key


def test_the_memory_plan_bounds_the_gpu_peak():
    """The plan's estimate of what the population allocates on the GPU, against the peak
    torch's allocator measured over two rounds (MLP 784-200-10, 2,048 nodes)."""
    config = load_config(
        {
            "nodes": 2048,
            "device": "cuda",
            "data": {
                "dataset": "synthetic",
                "partition": "iid",
                "synthetic": {"samples": 2048 * 40, "shape": [784]},
            },
            "model": {"name": "mlp", "hidden": [200]},
            "optimizer": {"momentum": 0.9},
            "topology": {"kind": "regular", "degree": 6},
        }
    )
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    sim = Simulation.build(config)
    for t in range(2):
        sim.step(t)
    peak = torch.cuda.max_memory_allocated() - base
    from gossamer.sim.memory import plan_for_config

    plan = plan_for_config(config, device=GPU)
    estimate = plan.total - plan.terms["process"]
    assert 0.5 * peak < estimate < 2.0 * peak, (estimate, peak, plan.terms)
