"""Top-k sparsification: the k coordinates of largest magnitude, with their indices."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import LossyCompressionConfig
from gossamer.sim.network.compression.base import Compressor, register_compressor
from gossamer.sim.network.message import SparseRows


class SparsifierConfig(LossyCompressionConfig):
    """A compressor that sends k of the P coordinates."""

    ratio: float = Field(
        0.01, gt=0, le=1, description="share of the coordinates sent: k = max(1, round(ratio P))"
    )


class TopKConfig(SparsifierConfig):
    name: Literal["top_k"] = "top_k"


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
        index = top_k_indices(x.abs(), self.k)  # (m, k)
        return SparseRows(index, x.gather(1, index), values.shapes)


_CHUNK = 8  # coordinates per chunk of the two-stage selection


def top_k_indices(magnitude: torch.Tensor, k: int) -> torch.Tensor:
    """The columns of the k largest entries of each row of ``magnitude`` (m, P), in two
    stages that give exactly ``torch.topk``'s set: the k chunks of 8 columns with the
    largest maxima contain every one of the k largest entries (each lies in a chunk
    whose maximum is at least the k-th largest value, and at most k chunks reach it), so
    the k largest of those 8k candidates are the k largest of the row. Measured 2.2x
    faster than one ``topk`` over the row (1,000 rows of 159,010, k = 1,590).
    """
    m, p = magnitude.shape
    if 2 * _CHUNK * k >= p:  # few chunks: one selection over the row
        return magnitude.topk(k, dim=1, sorted=False).indices
    whole = p // _CHUNK * _CHUNK
    maxima = magnitude[:, :whole].view(m, whole // _CHUNK, _CHUNK).amax(dim=2)
    if whole < p:  # the last, shorter chunk
        maxima = torch.cat([maxima, magnitude[:, whole:].amax(dim=1, keepdim=True)], dim=1)
    chunks = maxima.topk(k, dim=1, sorted=False).indices  # (m, k)
    offsets = torch.arange(_CHUNK, device=magnitude.device)
    columns = (chunks.unsqueeze(2) * _CHUNK + offsets).view(m, k * _CHUNK)  # (m, 8k)
    inside = columns < p
    candidates = magnitude.gather(1, columns.clamp(max=p - 1))
    candidates = torch.where(inside, candidates, -1.0)  # past the last column: never chosen
    return columns.gather(1, candidates.topk(k, dim=1, sorted=False).indices)
