"""Protocols: who trains and who communicates, round by round."""

from gossamer.sim.protocols.base import Context, Protocol, build_protocol, register_protocol
from gossamer.sim.protocols.baselines import (
    DPSGD,
    DPSGDConfig,
    NoSync,
    NoSyncConfig,
    PeriodicAveraging,
    PeriodicConfig,
)
from gossamer.sim.protocols.choco import ChocoConfig, ChocoSGD
from gossamer.sim.protocols.dynamic import (
    DynamicAveraging,
    DynamicConfig,
    DynamicGossip,
    DynamicGossipConfig,
)
from gossamer.sim.protocols.pushsum import PushSumConfig, StochasticGradientPush
from gossamer.sim.protocols.skiptrain import (
    Greedy,
    GreedyConfig,
    SkipTrain,
    SkipTrainConfig,
    SkipTrainConstrained,
    SkipTrainConstrainedConfig,
)

__all__ = [
    "DPSGD",
    "ChocoConfig",
    "ChocoSGD",
    "Context",
    "DPSGDConfig",
    "DynamicAveraging",
    "DynamicConfig",
    "DynamicGossip",
    "DynamicGossipConfig",
    "Greedy",
    "GreedyConfig",
    "NoSync",
    "NoSyncConfig",
    "PeriodicAveraging",
    "PeriodicConfig",
    "Protocol",
    "PushSumConfig",
    "SkipTrain",
    "SkipTrainConfig",
    "SkipTrainConstrained",
    "SkipTrainConstrainedConfig",
    "StochasticGradientPush",
    "build_protocol",
    "register_protocol",
]
