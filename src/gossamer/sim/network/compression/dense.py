"""``compression: none``: every message is the whole model in float32 (the default)."""

from __future__ import annotations

from typing import Literal

from gossamer.config import CompressionConfig
from gossamer.sim.network.compression.base import Dense, register_compressor


class NoCompressionConfig(CompressionConfig):
    name: Literal["none"] = "none"


register_compressor(NoCompressionConfig)(Dense)
