"""PowerSGD's low-rank step: each weight matrix sent as two rank-r factors."""

from __future__ import annotations

from math import prod
from typing import Literal

import torch
from pydantic import Field

from gossamer.config import ConfigError, LossyCompressionConfig
from gossamer.sim.network.compression.base import Compressor, CompressorState, register_compressor
from gossamer.sim.rng import Purpose, torch_generator
from gossamer.sim.stacked import StackedTensors


class PowerConfig(LossyCompressionConfig):
    name: Literal["power"] = "power"
    rank: int = Field(1, ge=1, description="rank r of each weight matrix's approximation")


@register_compressor(PowerConfig)
class Power(Compressor):
    """Rank-r compression by one power-iteration step with a warm start (Vogels,
    Karimireddy, Jaggi, "PowerSGD", NeurIPS 2019, Algorithm 1; used for gossip by
    PowerGossip, NeurIPS 2020).

    Each parameter tensor of two or more dimensions is the matrix M (rows = shape[0],
    cols = the product of the rest); with the node's Q (cols, r) from its last message:

        P = M Q,  P <- orthonormal columns spanning P (QR),  Q <- M^T P,  C(M) = P Q^T,

    and the new Q is kept as the next warm start (``state["q<l>"]``, (n, cols, r) for
    parameter l). Every node's first Q is the same keyed normal draw, keyed by
    ``(seed, COMPRESSION, l)``. One-dimensional tensors (biases, norms) are sent
    exactly. Encoding: the factors P and Q in float32, ``4 r (rows + cols)`` bytes per
    matrix, and ``4 P_l`` per vector. Deterministic and biased.
    """

    def __init__(self, config: PowerConfig, shapes, seed: int):
        super().__init__(config, shapes, seed)
        self.rank = config.rank
        self.matrices = {  # parameter index -> (rows, cols)
            layer: (shape[0], prod(shape[1:]))
            for layer, shape in enumerate(self.shapes)
            if len(shape) >= 2
        }
        if self.matrices:
            rows, cols = min(self.matrices.values(), key=min)
            if self.rank > min(rows, cols):
                raise ConfigError(
                    f"protocol.compression.rank: expected at most {min(rows, cols)} (the "
                    f"smallest matrix of the model, shape {rows} x {cols}); got {self.rank}"
                )

    def payload_bytes(self) -> int:
        vectors = sum(size for layer, size in enumerate(self.sizes) if layer not in self.matrices)
        factors = sum(self.rank * (rows + cols) for rows, cols in self.matrices.values())
        return 4 * (factors + vectors)

    def init_state(self, nodes: int, device: torch.device) -> CompressorState:
        state = {}
        for layer, (_, cols) in self.matrices.items():
            generator = torch_generator(self.seed, Purpose.COMPRESSION, layer)
            start = torch.randn(cols, self.rank, generator=generator)  # (cols, r)
            state[f"q{layer}"] = start.to(device).expand(nodes, -1, -1).contiguous()
        return state

    def compress(self, values, ids, key, state):
        m = values.num_nodes
        decoded = StackedTensors.zeros(self.shapes, m, values.device, values.blocks[0].dtype)
        for layer, (block, out) in enumerate(zip(values.blocks, decoded.blocks, strict=True)):
            if layer not in self.matrices:
                out.copy_(block)
                continue
            rows, cols = self.matrices[layer]
            matrix = block.view(m, rows, cols)
            warm = state[f"q{layer}"]  # (m, cols, r)
            left = torch.linalg.qr(torch.bmm(matrix, warm)).Q  # (m, rows, r), orthonormal
            right = torch.bmm(matrix.transpose(1, 2), left)  # (m, cols, r)
            warm.copy_(right)
            out.view(m, rows, cols).copy_(torch.bmm(left, right.transpose(1, 2)))
        return decoded
