"""Top-k sparsification: the k coordinates of largest magnitude, with their indices."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gossamer.config import LossyCompressionConfig
from gossamer.sim.network.compression.base import (
    Compressor,
    register_compressor,
    scatter_rows,
)


class TopKConfig(LossyCompressionConfig):
    name: Literal["top_k"] = "top_k"
    ratio: float = Field(
        0.01, gt=0, le=1, description="share of the coordinates sent: k = max(1, round(ratio P))"
    )


@register_compressor(TopKConfig)
class TopK(Compressor):
    """Top-k sparsification (Stich, Cordonnier, Jaggi, "Sparsified SGD with Memory",
    NeurIPS 2018; Alistarh et al., NeurIPS 2018): each node sends the k entries of its
    vector with the largest magnitude, over the whole model (all layers together, as
    DecentralizePy's CHOCO and TopK sharing do), and receivers take the rest as zero.

    Deterministic and biased; a contraction: ``||C(v) - v||^2 <= (1 - k/P) ||v||^2``.
    Encoding: k (index, value) pairs, each index a uint32 and each value a float32,
    so ``8k`` bytes (at ratio 1 that is twice the dense model: the rule does not switch
    encodings). Ties in magnitude are broken as ``torch.topk`` breaks them.
    """

    def __init__(self, config: TopKConfig, shapes, seed: int):
        super().__init__(config, shapes, seed)
        self.k = max(1, round(config.ratio * self.num_params))

    def payload_bytes(self) -> int:
        return 8 * self.k

    def temporary_bytes(self, nodes: int) -> int:
        return 3 * nodes * self.num_params * 4  # the matrix, |x|, the decoded blocks

    def compress(self, values, ids, key, state):
        x = values.matrix()  # (m, P)
        index = x.abs().topk(self.k, dim=1, sorted=False).indices  # (m, k)
        return scatter_rows(index, x.gather(1, index), values)
