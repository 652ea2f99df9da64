"""Scaled sign compression: one bit per value and one scale per parameter tensor."""

from __future__ import annotations

from math import ceil
from typing import Literal

import torch

from gossamer.config import LossyCompressionConfig
from gossamer.sim.network.compression.base import Compressor, register_compressor
from gossamer.sim.stacked import StackedTensors


class SignConfig(LossyCompressionConfig):
    name: Literal["sign"] = "sign"


@register_compressor(SignConfig)
class Sign(Compressor):
    """Scaled sign (Bernstein, Wang, Azizzadenesheli, Anandkumar, "signSGD", ICML 2018;
    Karimireddy, Rebjock, Stich, Jaggi, "Error Feedback Fixes SignSGD", ICML 2019,
    EF-SignSGD): per parameter tensor l of P_l values,

        C(v_l) = (||v_l||_1 / P_l) * sign(v_l),

    with sign(0) taken as +1 (one bit cannot say 0; -0.0 counts as 0). Deterministic
    and biased. Encoding, per tensor: the scale in float32 (4 bytes), then one bit per
    value (set: negative), packed: ``4 + ceil(P_l / 8)`` bytes.
    """

    def payload_bytes(self) -> int:
        return sum(4 + ceil(size / 8) for size in self.sizes)

    def compress(self, values, ids, key, state):
        decoded = StackedTensors.zeros(
            self.shapes, values.num_nodes, values.device, values.blocks[0].dtype
        )
        for block, out in zip(values.blocks, decoded.blocks, strict=True):  # (m, P_l)
            scale = block.abs().mean(dim=1, keepdim=True)  # (m, 1): ||v_l||_1 / P_l
            out.copy_(block).add_(0.0)  # -0.0 + 0.0 is +0.0: zeros count as positive
            torch.copysign(scale.expand_as(out), out, out=out)
        return decoded
