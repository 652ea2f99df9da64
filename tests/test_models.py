"""Stacked models against per-node nn.Module loops."""

from __future__ import annotations

import pytest
import torch

from gossamer.config import load_config
from gossamer.sim.models import build_model
from gossamer.sim.optim import AdamConfig, AdamWConfig, SGDConfig, build_optimizer
from reference import LoopPopulation, loop_evaluate

OPTIMIZERS = [
    SGDConfig(lr=0.2),
    SGDConfig(lr=0.1, weight_decay=0.01),
    SGDConfig(lr=0.05, momentum=0.9, weight_decay=0.001),
    SGDConfig(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
]
ADAPTIVE = [
    AdamConfig(lr=0.01, weight_decay=0.01, amsgrad=True),
    AdamWConfig(lr=0.01, betas=(0.8, 0.99)),
]
MODELS = {
    "lenet": ({"name": "lenet"}, (3, 32, 32), 10),
    "femnist_cnn": ({"name": "femnist_cnn"}, (1, 28, 28), 62),
    "resnet8": ({"name": "resnet8"}, (3, 12, 12), 10),
    "resnet20": ({"name": "resnet20", "groups": 4}, (3, 8, 8), 7),
    "custom_bn": ({"name": "custom", "import_path": "user_models:SmallNet"}, (2, 8, 8), 5),
    "custom_gn": (
        {"name": "custom", "import_path": "user_models:SmallNet", "batchnorm": "groupnorm"},
        (2, 8, 8),
        5,
    ),
    "cnn_groupnorm": (
        {"name": "cnn", "channels": [4, 6], "groupnorm": 2, "hidden": 5},
        (3, 8, 8),
        4,
    ),
    "mlp": ({"name": "mlp", "hidden": [9, 5]}, (12,), 4),
    "mlp_image": ({"name": "mlp", "hidden": [16]}, (1, 8, 8), 10),
    "cnn": ({"name": "cnn", "channels": [3, 4], "hidden": 6}, (2, 8, 8), 5),
    "cnn_no_hidden": (
        {"name": "cnn", "channels": [4], "hidden": 0, "kernel_size": 5},
        (1, 6, 6),
        3,
    ),
}


def _model(key):
    section, shape, classes = MODELS[key]
    return build_model(load_config({"model": section}).model, shape, classes)


def _stepper(model, params, config):
    """One stacked local step of every node with the optimizer ``config`` selects (its
    state kept between calls): ``step(x, y) -> BatchStats``."""
    optimizer = build_optimizer(config)
    state = optimizer.init(
        model.param_shapes, params.num_nodes, params.device, params.blocks[0].dtype
    )

    def step(x, y):
        tensors = params.tensors()
        return model.train_step(tensors, x, y, optimizer.step(tensors, state, config.lr))

    return step


def _distinct_rows(model, n, seed=0):
    """Rows that differ per node, so a mix-up between nodes cannot go unnoticed."""
    gen = torch.Generator().manual_seed(seed)
    base = model.initial_params(0)
    return base + 0.05 * torch.randn(n, model.num_params, generator=gen)


@pytest.mark.parametrize("key", list(MODELS))
def test_parameter_count_and_layout_match_the_template(key):
    model = _model(key)
    assert model.num_params == sum(p.numel() for p in model.template.parameters())
    row = _distinct_rows(model, 1)[0]
    loaded = model.load_row(row)
    stacked = model.stack(row)
    for tensor, param in zip(stacked.tensors(), loaded.parameters(), strict=True):
        assert tensor.is_contiguous() and torch.equal(tensor[0], param.data)
    assert torch.equal(stacked.matrix()[0], row)


def test_published_parameter_count_of_mlp_784_200_10():
    model = build_model(load_config({"model": {"name": "mlp", "hidden": [200]}}).model, (784,), 10)
    assert model.num_params == 784 * 200 + 200 + 200 * 10 + 10 == 159_010
    # by hand, per sample: forward 2 * 158,800, weight gradients 2 * 158,800, the hidden
    # layer's input gradient 2 * 2,000 (none w.r.t. the input): 639,200 FLOP
    assert model.train_flops_per_sample() * 32 == 20_454_400


@pytest.mark.parametrize("key", list(MODELS))
def test_forward_matches_module_per_node_and_shared(key):
    model = _model(key)
    n, batch = 4, 6
    rows = _distinct_rows(model, n)
    x = torch.randn(n, batch, *model.input_shape)
    stacked = model.forward(model.stack(rows).tensors(), x)
    shared = model.forward(model.stack(rows).tensors(), x[0], shared=True)
    for i in range(n):
        module = model.load_row(rows[i])
        with torch.no_grad():
            torch.testing.assert_close(stacked[i], module(x[i]), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(shared[i], module(x[0]), rtol=1e-5, atol=1e-5)


def _optimizer_id(config) -> str:
    if config.name == "sgd":
        return f"mu{config.momentum}-wd{config.weight_decay}-n{config.nesterov}"
    return f"{config.name}-wd{config.weight_decay}-ams{config.amsgrad}"


BIG_CNNS = [key for key in MODELS if _model(key).num_params >= 50_000]


@pytest.mark.parametrize("key", list(MODELS))
@pytest.mark.parametrize("opt", OPTIMIZERS, ids=_optimizer_id)
def test_train_step_matches_loop_of_modules_and_optimizers(key, opt):
    """Three float32 steps, each from the same parameters on both sides (the loop is set to
    the engine's before each step); each side carries its own optimizer state (momentum).

    Why each step from the same parameters: at lr 0.2 the FEMNIST CNN's loss climbs
    7 -> 140-760 -> 19-2,800 in three steps, and such a step amplifies a 1e-7 difference
    in the weights 1,000-fold (measured: 1.3e-7 -> 1.3e-4 on one node). The CPU picks the
    convolution and matmul kernels (oneDNN and MKL run AVX2 or AVX-512 code, summing in
    other orders), so after two such steps the loss differed from the loop's by 3e-7 on
    AVX-512 and by 2.9e-4 on an AVX2-only EPYC. From equal parameters a step's loss agrees
    to 3e-7 on both (the loss is continuous in the weights). Its gradient is not: where
    the two kernels' 1e-7 rounding puts a pre-activation on the other side of a ReLU or
    max-pool tie, the big CNNs' updates differ in up to 0.7% of the weights (measured:
    4e-4 of the update's norm, AVX2, LeNet; 1.2e-4, AVX-512, FEMNIST CNN). Those models'
    updates are checked exactly in float64 below."""
    model = _model(key)
    n, batch, steps = 5, 7, 3
    rows = _distinct_rows(model, n)
    params = model.stack(rows)
    step = _stepper(model, params, opt)
    loop = LoopPopulation(model.template, rows, opt)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        start = params.matrix().clone()
        loop.load_rows(start)  # the same Parameters: the optimizers keep their state
        x = torch.randn(n, batch, *model.input_shape, generator=gen)
        y = torch.randint(model.num_classes, (n, batch), generator=gen)
        with torch.no_grad():  # error of each node's batch before the step, by the loop
            expected_error = [
                float((loop.modules[i](x[i]).argmax(1) != y[i]).float().mean()) for i in range(n)
            ]
        stats = step(x, y)
        expected = [loop.step(i, x[i], y[i]) for i in range(n)]
        torch.testing.assert_close(stats.loss, torch.tensor(expected), rtol=1e-5, atol=1e-6)
        assert stats.error.tolist() == pytest.approx(expected_error)
        ours, theirs = params.matrix() - start, loop.rows() - start  # this step's updates
        if key not in BIG_CNNS:
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-6)
        else:  # a wrong layout or gradient would differ by O(1), a ReLU flip by < 1e-3
            assert float((ours - theirs).norm() / theirs.norm()) < 1e-2


@pytest.mark.parametrize("key", BIG_CNNS)
@pytest.mark.parametrize("opt", [OPTIMIZERS[0], OPTIMIZERS[3]], ids=_optimizer_id)
def test_big_cnn_training_matches_loop_exactly_in_float64(key, opt):
    """The big CNNs' three-step trajectories in float64, where no rounding lands near a
    ReLU's kink and even a 1,000-fold amplification leaves 1e-13: updates agree to 1e-9.
    (The optimizers' arithmetic does not depend on the model: the float32 test checks
    every optimizer on the small models to 1e-5; here plain SGD and Nesterov with weight
    decay.)"""
    model = _model(key)
    model.template.double()
    n, batch, steps = 3, 5, 3
    rows = _distinct_rows(model, n).double()
    params = model.stack(rows)
    step = _stepper(model, params, opt)
    loop = LoopPopulation(model.template, rows, opt)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(n, batch, *model.input_shape, generator=gen, dtype=torch.float64)
        y = torch.randint(model.num_classes, (n, batch), generator=gen)
        stats = step(x, y)
        expected = [loop.step(i, x[i], y[i]) for i in range(n)]
        torch.testing.assert_close(stats.loss, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(params.matrix() - rows, loop.rows() - rows, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("key", list(MODELS))
@pytest.mark.parametrize("opt", ADAPTIVE, ids=_optimizer_id)
def test_adam_and_adamw_match_torch_optim_on_every_model(key, opt):
    """Per-node Adam/AdamW state and bias correction against N torch.optim optimizers, in
    float64: Adam divides by the root of the second moment, so coordinates whose gradient
    is float32 rounding noise (near zero) take steps of up to lr in either direction, and
    float32 runs agree only in norm (measured 0.2-0.5% on ResNet-20). In float64 they agree
    to 1e-13. The float32 path is checked below on the MLP and the CNN."""
    model = _model(key)
    model.template.double()
    n, batch, steps = 3, 4, 3
    rows = _distinct_rows(model, n).double()
    params = model.stack(rows)
    step = _stepper(model, params, opt)
    loop = LoopPopulation(model.template, rows, opt)
    gen = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x = torch.randn(n, batch, *model.input_shape, generator=gen, dtype=torch.float64)
        y = torch.randint(model.num_classes, (n, batch), generator=gen)
        stats = step(x, y)
        expected = [loop.step(i, x[i], y[i]) for i in range(n)]
        torch.testing.assert_close(stats.loss, torch.tensor(expected, dtype=torch.float64))
    # atol: a conv bias before BatchNorm has a zero gradient up to 1e-17 rounding, which
    # Adam turns into steps of ~1e-10 (lr x noise / eps); updates here are ~1e-2
    torch.testing.assert_close(params.matrix() - rows, loop.rows() - rows, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("key", ["mlp", "cnn", "mlp_image"])
@pytest.mark.parametrize("opt", ADAPTIVE, ids=_optimizer_id)
def test_adam_in_float32_matches_torch_optim(key, opt):
    model = _model(key)
    n, batch = 5, 7
    rows = _distinct_rows(model, n)
    params = model.stack(rows)
    step = _stepper(model, params, opt)
    loop = LoopPopulation(model.template, rows, opt)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(n, batch, *model.input_shape, generator=gen)
        y = torch.randint(model.num_classes, (n, batch), generator=gen)
        step(x, y)
        for i in range(n):
            loop.step(i, x[i], y[i])
    torch.testing.assert_close(params.matrix() - rows, loop.rows() - rows, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("key", ["mlp", "cnn", "resnet8"])  # resnet: channels_last in fp32
def test_evaluate_matches_loop(key):
    model = _model(key)
    rows = _distinct_rows(model, 3)
    x = torch.randn(50, *model.input_shape)
    y = torch.randint(model.num_classes, (50,))
    loss_sum, correct = model.evaluate(model.stack(rows).tensors(), x, y, batch=16)  # uneven
    for i in range(3):
        loss, accuracy = loop_evaluate(model.load_row(rows[i]), x, y)
        assert loss_sum[i].item() / 50 == pytest.approx(loss, rel=1e-5)
        assert correct[i].item() / 50 == pytest.approx(accuracy)


def test_initial_params_are_seeded_and_equal_the_module_default_init():
    model = _model("mlp")
    a, b, c = model.initial_params(1), model.initial_params(1), model.initial_params(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    bound = 1 / 12**0.5  # nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    first_weight = model.stack(a).tensors()[0]
    assert first_weight.abs().max() <= bound and first_weight.abs().max() > 0.8 * bound


def test_cnn_rejects_inputs_it_cannot_use():
    from gossamer.config import ConfigError

    section = load_config({"model": {"name": "cnn", "channels": [4, 4, 4, 4]}}).model
    with pytest.raises(ConfigError, match="4 conv-pool blocks of .cnn. shrink a 8x8 input"):
        build_model(section, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="needs image inputs"):
        build_model(section, (32,), 10)


def test_bf16_autocast_cnn_step_stays_close_to_fp32_loop_and_keeps_fp32_weights():
    model = _model("cnn")
    model.autocast_dtype = torch.bfloat16
    opt = SGDConfig(lr=0.1)
    rows = _distinct_rows(model, 3)
    params = model.stack(rows)
    loop = LoopPopulation(model.template, rows, opt)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 8, *model.input_shape, generator=gen)
    y = torch.randint(model.num_classes, (3, 8), generator=gen)
    _stepper(model, params, opt)(x, y)
    for i in range(3):
        loop.step(i, x[i], y[i])
    assert all(t.dtype == torch.float32 for t in params.tensors())
    step = params.matrix() - rows  # bf16 gradients: a few percent off, never wrong in sign
    reference = loop.rows() - rows
    cosine = torch.nn.functional.cosine_similarity(step, reference, dim=1)
    assert (cosine > 0.97).all()  # measured 0.983-1.0 over 5 seeds; a layout bug gives ~0
    assert torch.allclose(step.norm(dim=1), reference.norm(dim=1), rtol=0.08)  # measured <= 4%


@pytest.mark.parametrize(
    ("key", "published"),
    [
        ("lenet", 89_834),  # DecentralizePy / SkipTrain CIFAR-10 LeNet
        ("femnist_cnn", 1_690_046),  # LEAF / SkipTrain FEMNIST CNN
    ],
)
def test_published_parameter_counts(key, published):
    section, _, _ = MODELS[key]
    shape, classes = {"lenet": ((3, 32, 32), 10), "femnist_cnn": ((1, 28, 28), 62)}[key]
    assert (
        build_model(load_config({"model": section}).model, shape, classes).num_params == published
    )


def test_resnet_parameter_counts_on_cifar():
    def count(name):
        return build_model(load_config({"model": {"name": name}}).model, (3, 32, 32), 10).num_params

    # He et al. 2016, Table 6: ResNet-20 0.27M parameters (option A shortcuts); by hand:
    # stem 432 + 32; stage 1: 3 x (2 x 2304 + 64); stage 2: 13,952 + 2 x 18,560;
    # stage 3: 55,552 + 2 x 73,984; fc 650
    assert count("resnet20") == 432 + 32 + 3 * 4672 + 13952 + 2 * 18560 + 55552 + 2 * 73984 + 650
    assert count("resnet20") == 269_722
    assert count("resnet8") == 432 + 32 + 4672 + 13952 + 55552 + 650 == 75_290


def test_generic_flop_count_agrees_with_the_exact_formulas():
    from gossamer.sim.models.layers import count_flops_and_activations

    for key in ("mlp", "cnn", "femnist_cnn"):
        model = _model(key)
        total, first, outputs = count_flops_and_activations(model.template, model.input_shape)
        assert total == model.forward_flops_per_sample()
        assert 3 * total - first == model.train_flops_per_sample()


def test_resnet20_forward_flops():
    model = build_model(load_config({"model": {"name": "resnet20"}}).model, (3, 32, 32), 10)
    # ~41 M multiply-adds is the usual figure for ResNet-20 on CIFAR-10
    assert 40e6 < model.forward_flops_per_sample() / 2 < 42e6


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "user_models:DataDependent",
            "cannot run in the stacked engine .* data-dependent control flow",
        ),
        ("user_models:UsesItem", "cannot run in the stacked engine"),
        ("user_models:WrongOutput", r"returns \(7,\) per sample; expected \(5,\) logits"),
        ("user_models:Missing", "'user_models:Missing' is not an nn.Module class"),
        ("no_such_module_xyz:Net", "importing 'no_such_module_xyz' failed: ModuleNotFoundError"),
        ("nocolon", "expected 'module:Class' or 'file.py:Class'"),
    ],
)
def test_user_models_that_cannot_be_stacked_are_explained(path, message):
    from gossamer.config import ConfigError

    section = load_config({"model": {"name": "custom", "import_path": path}}).model
    with pytest.raises(ConfigError, match=message):
        build_model(section, (2, 8, 8), 5)


def test_user_model_from_a_file_and_batchnorm_policies(tmp_path):
    source = tmp_path / "my_nets.py"
    source.write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, width=3):\n"
        "        super().__init__()\n"
        "        self.bn = nn.BatchNorm2d(2)\n"
        "        self.fc = nn.Linear(128, width)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.bn(x).flatten(1))\n"
    )
    section = load_config(
        {"model": {"name": "custom", "import_path": f"{source}:Net", "kwargs": {"width": 5}}}
    ).model
    model = build_model(section, (2, 8, 8), 5)
    assert model.num_params == 2 + 2 + 128 * 5 + 5
    bn = model.template.bn
    assert bn.track_running_stats is False and bn.running_mean is None  # per node
    section = load_config(
        {
            "model": {
                "name": "custom",
                "import_path": f"{source}:Net",
                "kwargs": {"width": 5},
                "batchnorm": "groupnorm",
            }
        }
    ).model
    assert isinstance(build_model(section, (2, 8, 8), 5).template.bn, torch.nn.GroupNorm)
