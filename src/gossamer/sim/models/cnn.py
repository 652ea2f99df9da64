"""Small convolutional networks, stacked over nodes with grouped convolutions.

Per node: ``[Conv(k x k, same padding) - (GroupNorm) - ReLU - MaxPool(2)] x
len(channels)``, then an optional hidden Linear-ReLU and a Linear classifier. All
nodes run as one convolution with ``groups = n`` (see ``layers``). The backward pass
is autograd's; ``engine.precision: bfloat16`` runs the forward pass under bf16
autocast in channels-last layout with fp32 master weights (docs/engine.md, Performance).

Two published instances are registered under their own names:

- ``lenet``: the GroupNorm LeNet of DecentralizePy and SkipTrain for CIFAR-10:
  three 5x5 convolutions with 32, 32 and 64 channels, each followed by
  GroupNorm(2) - ReLU - MaxPool(2), and one Linear layer; 89,834 parameters on
  (3, 32, 32) inputs.
- ``femnist_cnn``: the LEAF / SkipTrain FEMNIST CNN: 5x5 convolutions with 32 and
  64 channels (ReLU, MaxPool(2)), Linear 512, Linear to the classes; 1,690,046
  parameters on (1, 28, 28) inputs with 62 classes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from gossamer.config import ConfigError, ModelConfig
from gossamer.sim.models import layers
from gossamer.sim.models.base import StackedModel
from gossamer.sim.models.registry import register_model


class CNN(StackedModel):
    """Conv-(GroupNorm)-ReLU-MaxPool blocks, then Linear layers; input (C, H, W)."""

    uses_autocast = True

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: list[int],
        hidden: int,
        kernel_size: int,
        norm_groups: int = 0,
    ):
        in_channels, height, width = input_shape
        self.kernel_size = kernel_size
        self.norm_groups = norm_groups  # 0: no normalization
        self.conv_shapes = []  # (c_in, c_out, H, W) of each convolution
        blocks: list[nn.Module] = []
        for c_out in channels:
            blocks.append(nn.Conv2d(in_channels, c_out, kernel_size, padding=kernel_size // 2))
            if norm_groups:
                blocks.append(nn.GroupNorm(norm_groups, c_out))
            blocks += [nn.ReLU(), nn.MaxPool2d(2)]
            self.conv_shapes.append((in_channels, c_out, height, width))
            in_channels, height, width = c_out, height // 2, width // 2
        self.fc_widths = [in_channels * height * width, *([hidden] if hidden else []), num_classes]
        blocks.append(nn.Flatten())
        for i, (a, b) in enumerate(zip(self.fc_widths[:-1], self.fc_widths[1:], strict=True)):
            blocks.append(nn.Linear(a, b))
            if i < len(self.fc_widths) - 2:
                blocks.append(nn.ReLU())
        super().__init__(nn.Sequential(*blocks), input_shape, num_classes)

    def forward(self, params, inputs, shared=False):
        n = params[0].shape[0]
        layout = layers.conv_layout(self.autocast_dtype is not None, shared)
        h = layers.split_input(inputs, n, shared)
        k = 0  # index into params
        for layer in range(len(self.conv_shapes)):
            h = layers.conv2d(
                h,
                params[k],
                params[k + 1],
                shared=shared and layer == 0,
                padding=self.kernel_size // 2,
                layout=layout,
            )
            k += 2
            if self.norm_groups:
                h = layers.group_norm(h, params[k], params[k + 1], self.norm_groups)
                k += 2
            h = F.max_pool2d(F.relu(h), 2)
        h = layers.to_node_major(h, n)  # (n, B, F): node i's channels, then H, W
        fc = params[k:]
        for i in range(0, len(fc), 2):
            h = layers.linear(h, fc[i], fc[i + 1])
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
        layers_ = self._layer_flops()
        return 3 * sum(layers_) - layers_[0]  # no input gradient for the first layer


def _check_image(name: str, shape: tuple[int, ...], blocks: int) -> None:
    if len(shape) != 3:
        raise ConfigError(
            f"model.name: {name!r} needs image inputs of shape (channels, height, width); "
            f"the dataset gives {list(shape)}"
        )
    if min(shape[1:]) // 2**blocks < 1:
        raise ConfigError(
            f"model.name: {blocks} conv-pool blocks of {name!r} shrink a "
            f"{shape[1]}x{shape[2]} input below 1x1"
        )


class CNNConfig(ModelConfig):
    name: Literal["cnn"] = "cnn"
    channels: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [16, 32], min_length=1, description="output channels per conv block"
    )
    hidden: int = Field(64, ge=0, description="hidden Linear width (0: none)")
    kernel_size: int = Field(3, ge=1, description="odd kernel size, same padding")
    groupnorm: int = Field(0, ge=0, description="GroupNorm groups after each conv (0: none)")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd (same padding)")
        return value


@register_model(CNNConfig)
def build_cnn(config: CNNConfig, shape: tuple[int, ...], classes: int) -> CNN:
    """A small CNN: conv-(GroupNorm)-ReLU-MaxPool blocks, then Linear layers."""
    _check_image("cnn", shape, len(config.channels))
    return CNN(shape, classes, config.channels, config.hidden, config.kernel_size, config.groupnorm)


class LeNetConfig(ModelConfig):
    name: Literal["lenet"] = "lenet"
    groups: int = Field(2, ge=1, description="GroupNorm groups (the published model: 2)")


@register_model(LeNetConfig)
def build_lenet(config: LeNetConfig, shape: tuple[int, ...], classes: int) -> CNN:
    """The GroupNorm LeNet of DecentralizePy and SkipTrain (89,834 parameters on CIFAR-10)."""
    _check_image("lenet", shape, 3)
    return CNN(shape, classes, [32, 32, 64], hidden=0, kernel_size=5, norm_groups=config.groups)


class FemnistCNNConfig(ModelConfig):
    name: Literal["femnist_cnn"] = "femnist_cnn"


@register_model(FemnistCNNConfig)
def build_femnist_cnn(config: FemnistCNNConfig, shape: tuple[int, ...], classes: int) -> CNN:
    """The LEAF / SkipTrain FEMNIST CNN (1,690,046 parameters)."""
    _check_image("femnist_cnn", shape, 2)
    return CNN(shape, classes, [32, 64], hidden=512, kernel_size=5)
