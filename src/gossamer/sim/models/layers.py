"""Stacked layers: n nodes' copies of a layer computed as one operation.

Convolutional activations are kept as ``(B, n * C, H, W)``: node i's channels are
block i of the channel axis. Then one grouped convolution (``groups = n``) applies
every node's filters to its own channels, ``group_norm`` with ``n * g`` groups is
exactly each node's GroupNorm with g groups, and element-wise layers need nothing.
Linear layers work on ``(n, B, F)`` with batched matrix products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Evaluation (every node on one shared test batch) runs its convolutions in
# channels_last in float32 too: its first layer is one ungrouped convolution of the
# batch into n x C_out channels, ~40 GFLOP/s in NCHW here and 1.3-1.6x faster in
# channels_last (docs/engine.md, Evaluation). benchmarks/evaluation.py turns this
# off to measure the difference.
EVALUATION_CHANNELS_LAST = True


def conv_layout(autocast: bool, shared: bool) -> torch.memory_format:
    """The layout of a stacked network's convolutions: channels_last under bf16
    autocast (where its kernels are fastest, docs/engine.md) and for evaluation;
    NCHW for float32 training, where the grouped convolutions are faster forward
    and backward."""
    fast = autocast or (shared and EVALUATION_CHANNELS_LAST)
    return torch.channels_last if fast else torch.contiguous_format


def conv2d(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    shared: bool,
    stride: int = 1,
    padding: int = 0,
    layout: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    """Every node's convolution: h (B, n*C_in, H, W) -> (B, n*C_out, H', W').

    ``weight`` (n, C_out, C_in, k, k) and ``bias`` (n, C_out) are views of the stacked
    parameters. With ``shared`` the input is one (B, C_in, H, W) batch seen by every
    node (the first layer during evaluation): one ungrouped convolution with all
    n x C_out filters, so the batch is never copied n times.
    """
    n, c_out = weight.shape[:2]
    w = weight.reshape(n * c_out, *weight.shape[2:]).contiguous(memory_format=layout)
    b = None if bias is None else bias.reshape(n * c_out)
    h = h.contiguous(memory_format=layout)
    return F.conv2d(h, w, b, stride=stride, padding=padding, groups=1 if shared else n)


def group_norm(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float = 1e-5
) -> torch.Tensor:
    """Every node's GroupNorm(groups, C): h (B, n*C, H, W), weight and bias (n, C)."""
    n, c = weight.shape
    return F.group_norm(h, n * groups, weight.reshape(n * c), bias.reshape(n * c), eps)


def to_node_major(h: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n*C, H, W) -> (n, B, C*H*W): each node's features, flattened as nn.Flatten."""
    batch = h.shape[0]
    return h.reshape(batch, n, -1).transpose(0, 1)


def linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Every node's Linear: h (n, B, in), weight (n, out, in), bias (n, out) -> (n, B, out)."""
    if bias is None:
        return torch.bmm(h, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def split_input(inputs: torch.Tensor, n: int, shared: bool) -> torch.Tensor:
    """Image inputs as the first layer wants them: (n, B, C, H, W) -> (B, n*C, H, W);
    a shared (B, C, H, W) batch stays as it is."""
    if shared:
        return inputs
    batch = inputs.shape[1]
    return inputs.transpose(0, 1).reshape(batch, n * inputs.shape[2], *inputs.shape[3:])


def count_flops_and_activations(
    template: nn.Module, input_shape: tuple[int, ...]
) -> tuple[int, int, int]:
    """Forward FLOPs (2 x multiply-adds) of convolutions and linear layers for one sample,
    the FLOPs of the first such layer, and the floats of all layer outputs.

    Measured with forward hooks on a zero sample, so it holds for any module.
    """
    flops: list[int] = []
    outputs = [0]

    def count(module, args, output):
        if not isinstance(output, torch.Tensor):
            return
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            flops.append(2 * module.in_channels // module.groups * k * output.numel())
        elif isinstance(module, nn.Linear):
            flops.append(2 * module.in_features * module.out_features)
        if not list(module.children()):
            outputs[0] += output.numel()

    handles = [m.register_forward_hook(count) for m in template.modules()]
    try:
        training = template.training
        template.eval()
        with torch.no_grad():
            template(torch.zeros(1, *input_shape))
        template.train(training)
    finally:
        for handle in handles:
            handle.remove()
    return sum(flops), (flops[0] if flops else 0), outputs[0]
