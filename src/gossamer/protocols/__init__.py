"""Protocols: who trains and who communicates, round by round."""

from gossamer.protocols.base import Context, Protocol, build_protocol, register_protocol
from gossamer.protocols.baselines import (
    DPSGD,
    DPSGDConfig,
    NoSync,
    NoSyncConfig,
    PeriodicAveraging,
    PeriodicConfig,
)
from gossamer.protocols.dynamic import (
    DynamicAveraging,
    DynamicConfig,
    DynamicGossip,
    DynamicGossipConfig,
    suggest_delta,
)
from gossamer.protocols.skiptrain import (
    Greedy,
    GreedyConfig,
    SkipTrain,
    SkipTrainConfig,
    SkipTrainConstrained,
    SkipTrainConstrainedConfig,
)

__all__ = [
    "DPSGD",
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
    "SkipTrain",
    "SkipTrainConfig",
    "SkipTrainConstrained",
    "SkipTrainConstrainedConfig",
    "build_protocol",
    "register_protocol",
    "suggest_delta",
]
