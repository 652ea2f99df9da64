"""Models of your own, in a file of your own: any torch ``nn.Module``, run on every
node at once (``vmap`` over the nodes' parameters).

    gossamer run --set model.name=custom --set model.import_path=examples/my_nets.py:Net
    gossamer run --set model.name=custom --set model.import_path=examples/my_nets.py:Bad

``model.kwargs`` are the constructor's arguments (``--set model.kwargs.width=64``).
``Bad`` shows what the stacked engine cannot run; the error says why before any work
starts (docs/datasets.md).
"""

import torch
from torch import nn


class Net(nn.Module):
    """For 8x8 digits: a 3x3 convolution, ReLU, a hidden Linear layer, the classes."""

    def __init__(self, channels: int = 8, width: int = 32, classes: int = 10):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.hidden = nn.Linear(channels * 8 * 8, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 8, 8) -> (B, classes)
        x = torch.relu(self.conv(x))
        return self.out(torch.relu(self.hidden(x.flatten(1))))


class Bad(Net):
    """Branches in Python on a tensor's value: one node's data would decide for all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return super().forward(x)
        return -super().forward(x)
