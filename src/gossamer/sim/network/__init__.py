"""The network layer: messages, what they carry (compression), and the network that
moves and charges them."""

from gossamer.sim.network.compression import (
    Compressor,
    Encoder,
    build_compressor,
    register_compressor,
)
from gossamer.sim.network.message import Message
from gossamer.sim.network.network import Network

__all__ = [
    "Compressor",
    "Encoder",
    "Message",
    "Network",
    "build_compressor",
    "register_compressor",
]
