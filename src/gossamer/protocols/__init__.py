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

__all__ = [
    "DPSGD",
    "Context",
    "DPSGDConfig",
    "DynamicAveraging",
    "DynamicConfig",
    "DynamicGossip",
    "DynamicGossipConfig",
    "NoSync",
    "NoSyncConfig",
    "PeriodicAveraging",
    "PeriodicConfig",
    "Protocol",
    "build_protocol",
    "register_protocol",
    "suggest_delta",
]
