"""The network layer: messages, what they carry (compression), the network that moves
and charges them, and how receivers combine them (aggregation)."""

from gossamer.sim.network.aggregation import Aggregator, build_aggregator, register_aggregator
from gossamer.sim.network.compression import (
    Compressor,
    Encoder,
    build_compressor,
    register_compressor,
)
from gossamer.sim.network.message import Message
from gossamer.sim.network.network import Network

__all__ = [
    "Aggregator",
    "Compressor",
    "Encoder",
    "Message",
    "Network",
    "build_aggregator",
    "build_compressor",
    "register_aggregator",
    "register_compressor",
]
