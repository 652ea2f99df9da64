"""A small convolutional network, stacked over nodes with grouped convolutions.

Per node: ``[Conv(k x k, same padding) - ReLU - MaxPool(2)] x len(channels)``, then
an optional hidden Linear-ReLU and a Linear classifier. All nodes run as *one*
convolution with ``groups = n``: node i's channels are block i of the channel axis.
For a shared input (evaluation), the first layer is one ungrouped convolution with
all n x c filters, so the test batch is never copied n times. The backward pass is
autograd's; ``engine.precision: bfloat16`` runs the convolutions under bf16 autocast
with fp32 master weights (PERFORMANCE.md: 2-3x on CPUs with AVX-512 bf16).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from gossamer.config import ConfigError, ModelConfig
from gossamer.models.base import StackedModel
from gossamer.models.registry import register_model


class CNN(StackedModel):
    """Conv-ReLU-MaxPool blocks, then Linear layers; input (C, H, W)."""

    uses_autocast = True

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: list[int],
        hidden: int,
        kernel_size: int,
    ):
        in_channels, height, width = input_shape
        self.kernel_size = kernel_size
        self.conv_shapes = []  # (c_in, c_out, H, W) of each convolution
        layers: list[nn.Module] = []
        for c_out in channels:
            layers += [
                nn.Conv2d(in_channels, c_out, kernel_size, padding=kernel_size // 2),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            self.conv_shapes.append((in_channels, c_out, height, width))
            in_channels, height, width = c_out, height // 2, width // 2
        self.fc_widths = [in_channels * height * width, *([hidden] if hidden else []), num_classes]
        layers.append(nn.Flatten())
        for i, (a, b) in enumerate(zip(self.fc_widths[:-1], self.fc_widths[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(self.fc_widths) - 2:
                layers.append(nn.ReLU())
        super().__init__(nn.Sequential(*layers), input_shape, num_classes)

    def forward(self, params, inputs, shared=False):
        n = params[0].shape[0]
        k = self.kernel_size
        if shared:
            h = inputs  # (B, C, H, W); the first convolution is ungrouped
        else:
            batch = inputs.shape[1]
            h = inputs.transpose(0, 1).reshape(batch, n * inputs.shape[2], *inputs.shape[3:])
        # bf16 convolutions are fastest in channels_last (PERFORMANCE.md); fp32 in NCHW.
        layout = torch.channels_last if self.autocast_dtype is not None else torch.contiguous_format
        for layer, (c_in, c_out, _, _) in enumerate(self.conv_shapes):
            weight = params[2 * layer].reshape(n * c_out, c_in, k, k)  # a view
            weight = weight.contiguous(memory_format=layout)
            h = h.contiguous(memory_format=layout)
            bias = params[2 * layer + 1].reshape(n * c_out)
            groups = 1 if shared and layer == 0 else n
            h = F.conv2d(h, weight, bias, padding=k // 2, groups=groups)  # (B, n*c_out, H, W)
            h = F.max_pool2d(F.relu(h), 2)
        batch = h.shape[0]
        h = h.reshape(batch, n, -1).transpose(0, 1)  # (n, B, F): node i's channels, then H, W
        fc = params[2 * len(self.conv_shapes) :]
        for i in range(0, len(fc), 2):
            h = torch.baddbmm(fc[i + 1].unsqueeze(1), h, fc[i].transpose(1, 2))
            if i < len(fc) - 2:
                h = F.relu(h)
        return h

    def activations_per_sample(self) -> int:
        return sum(c_out * h * w for _, c_out, h, w in self.conv_shapes) + sum(self.fc_widths)

    def _layer_flops(self) -> list[int]:
        k2 = self.kernel_size**2
        conv = [2 * c_in * c_out * k2 * h * w for c_in, c_out, h, w in self.conv_shapes]
        fc = [2 * a * b for a, b in zip(self.fc_widths[:-1], self.fc_widths[1:], strict=True)]
        return conv + fc

    def forward_flops_per_sample(self) -> int:
        return sum(self._layer_flops())

    def train_flops_per_sample(self) -> int:
        layers = self._layer_flops()
        return 3 * sum(layers) - layers[0]  # no input gradient for the first layer


def _build(config: CNNConfig, shape: tuple[int, ...], classes: int) -> CNN:
    if len(shape) != 3:
        raise ConfigError(
            f"model.name: 'cnn' needs image inputs of shape (channels, height, width); "
            f"the dataset gives {list(shape)}"
        )
    side = min(shape[1:]) // 2 ** len(config.channels)
    if side < 1:
        raise ConfigError(
            f"model.channels: {len(config.channels)} conv-pool blocks shrink a "
            f"{shape[1]}x{shape[2]} input below 1x1; got {config.channels}"
        )
    return CNN(shape, classes, config.channels, config.hidden, config.kernel_size)


@register_model(_build)
class CNNConfig(ModelConfig):
    name: Literal["cnn"] = "cnn"
    channels: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, description="output channels per conv block"
    )
    hidden: int = Field(64, ge=0, description="hidden Linear width (0: none)")
    kernel_size: int = Field(3, ge=1, description="odd kernel size, same padding")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (same padding)")
        return value
