"""QSGD: stochastic quantization of each parameter tensor to s levels of its norm."""

from __future__ import annotations

from math import ceil
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from gossamer.config import LossyCompressionConfig
from gossamer.sim.network.compression.base import Compressor, register_compressor
from gossamer.sim.network.compression.random_k import cyclic_windows, on_device
from gossamer.sim.rng import Purpose, hash32, numpy_generator
from gossamer.sim.stacked import StackedTensors


class QsgdConfig(LossyCompressionConfig):
    name: Literal["qsgd"] = "qsgd"
    levels: int = Field(
        16, ge=2, description="quantization levels s of each tensor's norm (QSGD's s)"
    )


@register_compressor(QsgdConfig)
class Qsgd(Compressor):
    """QSGD (Alistarh, Grubic, Li, Tomioka, Vojnovic, "QSGD: Communication-Efficient SGD
    via Gradient Quantization and Encoding", NeurIPS 2017, Sec. 3.1): with s levels,

        Q(v_j) = ||v|| * sign(v_j) * xi_j / s,
        xi_j = floor(s |v_j| / ||v||) + [u_j < frac(s |v_j| / ||v||)],  u_j ~ U[0, 1),

    so E[Q(v)] = v. The bucket (which ||v||) is one parameter tensor: each tensor has
    its own norm. A zero tensor decodes to zeros.

    Dither (our choice, for speed): one vector u0 of P uniform numbers, drawn once from
    the run's seed; node i in exchange ``key`` uses ``u_j = frac(u0[(j + b_i) mod P] +
    c_i)`` for its coordinate j (over the whole model), with ``b_i = hash32(seed,
    COMPRESSION, *key, i, 0) mod P`` and ``c_i = hash32(seed, COMPRESSION, *key, i, 1) /
    2**32``. Each u_j is uniform (up to float32 rounding), so Q is unbiased; its
    coordinates are not independent of each other, which unbiasedness does not need.

    Encoding, per tensor of P_l values: its norm in float32 (4 bytes), then per value
    a sign bit and the level xi in ``w = ceil(log2(s + 1))`` bits, fixed width,
    bit-packed: ``4 + ceil(P_l (1 + w) / 8)`` bytes (QSGD's Elias coding of the levels
    would be shorter but variable; every message here has one length).
    """

    unbiased = True

    def __init__(self, config: QsgdConfig, shapes, seed: int):
        super().__init__(config, shapes, seed)
        self.levels = config.levels
        self.level_bits = self.levels.bit_length()  # ceil(log2(s + 1)): levels 0..s
        dither = torch.from_numpy(
            numpy_generator(seed, Purpose.COMPRESSION).random(self.num_params, np.float32)
        )  # (P,) float32 in [0, 1): u0
        self.dither = {torch.device("cpu"): torch.cat([dither, dither])}  # (2P,) per device

    def payload_bytes(self) -> int:
        bits = 1 + self.level_bits
        return sum(4 + ceil(size * bits / 8) for size in self.sizes)

    def uniforms(self, ids: torch.Tensor, key: tuple[int, ...], lo: int, size: int):
        """(m, size) the dither u_j of coordinates lo..lo+size-1 for nodes ``ids`` (m,)."""
        shifts = hash32(self.seed, Purpose.COMPRESSION, *key, ids, 0) % self.num_params
        offsets = hash32(self.seed, Purpose.COMPRESSION, *key, ids, 1).float() / 2.0**32
        window = cyclic_windows(on_device(self.dither, ids.device), shifts + lo, size)  # (m, size)
        return window.add_(offsets.unsqueeze(1)).frac_()

    def compress(self, values, ids, key, state):
        decoded = StackedTensors.zeros(
            self.shapes, values.num_nodes, values.device, values.blocks[0].dtype
        )
        lo = 0
        for block, out in zip(values.blocks, decoded.blocks, strict=True):  # (m, P_l)
            norm = torch.linalg.vector_norm(block, dim=1, keepdim=True)  # (m, 1)
            ratio = block.abs() * (self.levels / torch.where(norm > 0, norm, 1.0))
            level = ratio.floor()
            level += self.uniforms(ids, key, lo, block.shape[1]) < ratio - level
            level.clamp_(max=self.levels)  # rounding can put |v_j| / ||v|| above 1
            out.copy_(level.mul_(norm / self.levels).copysign_(block))
            lo += block.shape[1]
        return decoded
