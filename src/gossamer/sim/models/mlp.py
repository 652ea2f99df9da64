"""Multi-layer perceptron with a fused, hand-written stacked training step.

The step runs the forward pass with ``baddbmm`` over all nodes, back-propagates by
hand and applies the optimizer *inside* the backward pass: each weight's gradient is
handed over as the accumulator ``W.baddbmm_(dz^T, h, beta, alpha)`` as soon as its
input gradient ``dz W`` has been taken, so with SGD the gradient of the (n, P)
parameters is never stored (60-65% of the
matmul rate, the fastest technique measured for MLP-sized models; docs/engine.md,
Performance).
"""

from __future__ import annotations

from math import prod
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from gossamer.config import ModelConfig
from gossamer.sim.models.base import (
    BatchStats,
    StackedModel,
    cross_entropy_per_node,
    error_per_node,
)
from gossamer.sim.models.registry import register_model
from gossamer.sim.optim import ParamUpdate, add_scaled


class MLP(StackedModel):
    """Flatten, then Linear-ReLU layers of ``hidden`` widths, then a Linear classifier."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: list[int]):
        self.widths = [prod(input_shape), *hidden, num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (fan_in, fan_out) in enumerate(zip(self.widths[:-1], self.widths[1:], strict=True)):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(hidden):
                layers.append(nn.ReLU())
        super().__init__(nn.Sequential(*layers), input_shape, num_classes)

    @staticmethod
    def _layers(params: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(params[0::2], params[1::2], strict=True))  # [(W (n,out,in), b (n,out))]

    def forward(self, params, inputs, shared=False):
        h = inputs.flatten(1) if shared else inputs.flatten(2)  # (B, D) or (n, B, D)
        layers = self._layers(params)
        for i, (weight, bias) in enumerate(layers):
            h = torch.matmul(h, weight.transpose(1, 2)).add_(bias.unsqueeze(1))  # (n, B, out)
            if i < len(layers) - 1:
                h.relu_()
        return h

    def activations_per_sample(self) -> int:
        return sum(self.widths[1:])

    def forward_flops_per_sample(self) -> int:
        return sum(2 * a * b for a, b in zip(self.widths[:-1], self.widths[1:], strict=True))

    def train_flops_per_sample(self) -> int:
        pairs = list(zip(self.widths[:-1], self.widths[1:], strict=True))
        # forward + weight gradient for every layer, input gradient for all but the first
        return sum(2 * a * b * (3 if i else 2) for i, (a, b) in enumerate(pairs))

    def train_step(
        self,
        params: list[torch.Tensor],
        inputs: torch.Tensor,
        targets: torch.Tensor,
        update: ParamUpdate,
    ) -> BatchStats:
        n, batch = targets.shape
        layers = self._layers(params)
        acts = [inputs.reshape(n, batch, -1)]  # inputs of each layer
        for i, (weight, bias) in enumerate(layers):
            z = torch.baddbmm(bias.unsqueeze(1), acts[-1], weight.transpose(1, 2))  # (n, B, out)
            acts.append(z.relu_() if i < len(layers) - 1 else z)
        logits = acts.pop()  # (n, B, C)
        stats = BatchStats(cross_entropy_per_node(logits, targets), error_per_node(logits, targets))
        dz = torch.softmax(logits, dim=-1)  # d(mean CE)/d logits = (softmax - onehot) / B
        dz.scatter_add_(2, targets.unsqueeze(2), torch.full_like(dz[..., :1], -1.0))
        dz.div_(batch)
        for i in reversed(range(len(layers))):
            weight, h = layers[i][0], acts[i]
            # input gradient through ReLU, taken before W moves (threshold_backward: dz W * [h > 0])
            dh = torch.ops.aten.threshold_backward(torch.bmm(dz, weight), h, 0.0) if i else None

            def weight_grad(t, beta, alpha, dz=dz, h=h):
                t.baddbmm_(dz.transpose(1, 2), h, beta=beta, alpha=alpha)

            update(2 * i, weight_grad)
            update(2 * i + 1, add_scaled(dz.sum(1)))
            dz = dh
        return stats


class MLPConfig(ModelConfig):
    name: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64], description="hidden layer widths"
    )


@register_model(MLPConfig)
def build_mlp(config: MLPConfig, shape: tuple[int, ...], classes: int) -> MLP:
    """Multi-layer perceptron (ReLU) with a fused hand-written stacked training step."""
    return MLP(shape, classes, config.hidden)
