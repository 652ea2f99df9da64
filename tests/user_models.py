"""User models for tests of model.name: custom (imported as user_models:Class)."""

import torch
from torch import nn


class SmallNet(nn.Module):
    """Conv, BatchNorm, Linear: exercises both batchnorm policies."""

    def __init__(self, width: int = 6, classes: int = 5):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.out(torch.relu(self.fc(x.flatten(1))))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 5)

    def forward(self, x):
        if x.sum() > 0:  # Python control flow on a tensor value: not vmappable
            return self.fc(x.flatten(1))
        return -self.fc(x.flatten(1))


class UsesItem(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 5)

    def forward(self, x):
        return self.fc(x.flatten(1)) * x.mean().item()


class WrongOutput(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(128, 7)

    def forward(self, x):
        return self.fc(x.flatten(1))
