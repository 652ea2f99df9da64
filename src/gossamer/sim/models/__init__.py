"""Model zoo for the stacked engine; each model registers its config section and builder."""

from gossamer.sim.models.base import BatchStats, StackedModel, cross_entropy_per_node
from gossamer.sim.models.cnn import CNN, CNNConfig, FemnistCNNConfig, LeNetConfig
from gossamer.sim.models.custom import CustomModelConfig, FunctionalModel
from gossamer.sim.models.mlp import MLP, MLPConfig
from gossamer.sim.models.registry import build_model, register_model
from gossamer.sim.models.resnet import ResNet, ResNet8Config, ResNet20Config

__all__ = [
    "BatchStats",
    "CNN",
    "CNNConfig",
    "CustomModelConfig",
    "FunctionalModel",
    "FemnistCNNConfig",
    "LeNetConfig",
    "MLP",
    "MLPConfig",
    "ResNet",
    "ResNet20Config",
    "ResNet8Config",
    "StackedModel",
    "build_model",
    "cross_entropy_per_node",
    "register_model",
]
