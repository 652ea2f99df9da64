"""Compressors: what a model message carries (one file each, registered by name)."""

from gossamer.sim.network.compression import (  # noqa: F401 - registers built-ins
    dense,
    power,
    qsgd,
    random_k,
    sign,
    top_k,
)
from gossamer.sim.network.compression.base import (
    Compressor,
    CompressorState,
    Dense,
    Encoder,
    build_compressor,
    register_compressor,
)

__all__ = [
    "Compressor",
    "CompressorState",
    "Dense",
    "Encoder",
    "build_compressor",
    "register_compressor",
]
