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

__all__ = [
    "DPSGD",
    "Context",
    "DPSGDConfig",
    "NoSync",
    "NoSyncConfig",
    "PeriodicAveraging",
    "PeriodicConfig",
    "Protocol",
    "build_protocol",
    "register_protocol",
]
