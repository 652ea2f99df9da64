"""Model zoo for the stacked engine; each model registers its config section and builder."""

from gossamer.models.base import BatchStats, StackedModel, cross_entropy_per_node
from gossamer.models.cnn import CNN, CNNConfig
from gossamer.models.mlp import MLP, MLPConfig
from gossamer.models.registry import build_model, register_model

__all__ = [
    "BatchStats",
    "CNN",
    "CNNConfig",
    "MLP",
    "MLPConfig",
    "StackedModel",
    "build_model",
    "cross_entropy_per_node",
    "register_model",
]
