"""CIFAR ResNets with GroupNorm, stacked over nodes.

He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016),
Section 4.2: ResNet-(6n+2) for CIFAR: a 3x3 convolution with 16 channels, then three
stages of n basic blocks with 16, 32 and 64 channels (the 2nd and 3rd start with
stride 2), global average pooling and a Linear classifier. Shortcuts are the paper's
option A (identity; subsample and zero-pad the channels where the shape changes), so
they have no parameters: ResNet-20 (n=3) has 269,722 parameters (the paper's 0.27 M)
and ResNet-8 (n=1) 75,290.

BatchNorm is replaced by GroupNorm (``groups`` per layer, default 2; our choice,
configurable): BatchNorm's running statistics would mix nodes' data, GroupNorm's
affine parameters are a node's own and it needs no statistics across samples.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from gossamer.config import ConfigError, ModelConfig
from gossamer.sim.models import layers
from gossamer.sim.models.base import StackedModel
from gossamer.sim.models.registry import register_model

STAGES = (16, 32, 64)


def _shortcut(x: torch.Tensor, c_out: int) -> torch.Tensor:
    """Option A for one node's batch: subsample by 2, zero-pad channels to c_out."""
    pad = (c_out - x.shape[1]) // 2
    return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, c_out)
        self.reshape = stride != 1 or c_in != c_out
        self.c_out = c_out

    def forward(self, x):
        out = F.relu(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        return F.relu(out + (_shortcut(x, self.c_out) if self.reshape else x))


class ResNetTemplate(nn.Module):
    """One node's ResNet-(6n+2), the layout reference of the stacked model."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, groups: int):
        super().__init__()
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, STAGES[0], 3, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, STAGES[0])
        stages, c_in = [], STAGES[0]
        for stage, c_out in enumerate(STAGES):
            for b in range(blocks):
                stride = 2 if stage > 0 and b == 0 else 1
                stages.append(BasicBlock(c_in, c_out, stride, groups))
                c_in = c_out
        self.blocks = nn.Sequential(*stages)
        self.fc = nn.Linear(STAGES[-1], num_classes)

    def forward(self, x):
        x = F.relu(self.gn1(self.conv1(x)))
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ResNet(StackedModel):
    """Every node's ResNet-(6n+2) at once: grouped convolutions, per-node GroupNorm."""

    uses_autocast = True

    def __init__(self, depth: int, input_shape: tuple[int, ...], num_classes: int, groups: int):
        self.groups = groups
        template = ResNetTemplate(depth, input_shape[0], num_classes, groups)
        self.plan = [(b.conv1.stride[0], b.reshape, b.c_out) for b in template.blocks]
        super().__init__(template, input_shape, num_classes)

    def forward(self, params, inputs, shared=False):
        n = params[0].shape[0]
        layout = layers.conv_layout(self.autocast_dtype is not None, shared)
        h = layers.split_input(inputs, n, shared)
        h = layers.conv2d(h, params[0], None, shared=shared, padding=1, layout=layout)
        h = F.relu(layers.group_norm(h, params[1], params[2], self.groups))
        k = 3
        for stride, reshape, c_out in self.plan:
            conv1, gn1w, gn1b, conv2, gn2w, gn2b = params[k : k + 6]
            k += 6
            out = layers.conv2d(
                h, conv1, None, shared=False, stride=stride, padding=1, layout=layout
            )
            out = F.relu(layers.group_norm(out, gn1w, gn1b, self.groups))
            out = layers.conv2d(out, conv2, None, shared=False, padding=1, layout=layout)
            out = layers.group_norm(out, gn2w, gn2b, self.groups)
            if reshape:  # option A, node by node: (B, n, C, H, W) subsampled and padded
                batch, _, height, width = h.shape
                pad = (c_out - h.shape[1] // n) // 2
                nodes = h.reshape(batch, n, -1, height, width)[..., ::2, ::2]
                h = F.pad(nodes, (0, 0, 0, 0, pad, pad)).reshape(batch, n * c_out, *out.shape[2:])
            h = F.relu(out + h)
        pooled = h.mean(dim=(2, 3))  # (B, n * 64)
        features = pooled.reshape(pooled.shape[0], n, -1).transpose(0, 1)  # (n, B, 64)
        return layers.linear(features, params[k], params[k + 1])


def _builder(depth: int):
    def build(config, shape: tuple[int, ...], classes: int) -> ResNet:
        """He et al.'s CIFAR ResNet with GroupNorm and option-A shortcuts."""
        if len(shape) != 3 or min(shape[1:]) < 4:
            raise ConfigError(
                f"model.name: 'resnet{depth}' needs image inputs (channels, height, width) of "
                f"at least 4x4; the dataset gives {list(shape)}"
            )
        if STAGES[0] % config.groups:
            raise ConfigError(
                f"model.groups: must divide 16 (the first stage's channels); got {config.groups}"
            )
        return ResNet(depth, shape, classes, config.groups)

    build.__doc__ = f"ResNet-{depth} for CIFAR (He et al. 2016) with GroupNorm, option-A shortcuts."
    return build


class ResNet8Config(ModelConfig):
    name: Literal["resnet8"] = "resnet8"
    groups: int = Field(2, ge=1, description="GroupNorm groups per layer")


class ResNet20Config(ModelConfig):
    name: Literal["resnet20"] = "resnet20"
    groups: int = Field(2, ge=1, description="GroupNorm groups per layer")


build_resnet8 = register_model(ResNet8Config)(_builder(8))
build_resnet20 = register_model(ResNet20Config)(_builder(20))
