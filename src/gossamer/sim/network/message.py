"""A message: what each sending node puts on the wire for one exchange, and its size.

The simulation does not serialize messages: it carries what a receiver *reconstructs*
from one (one row per sender) and counts what the encoding would put on the wire
(``bytes``, header included). The byte rules of every encoding are in
docs/compression.md; ``tests/test_compression.py`` checks each against an independent
encoder of the same message. The ledger, the simulated clock (bytes x 8 / bandwidth)
and the link energy all follow from ``bytes``.

A sparsifier's message is kept sparse (:class:`SparseRows`: k entries a row), so that
receivers that only add it somewhere touch k entries a row, not P; its dense form is
made when a receiver needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from gossamer.sim.stacked import StackedTensors


@dataclass
class SparseRows:
    """An (m, P) stacked matrix that is zero but for k entries a row."""

    index: torch.Tensor  # (m, k) int64 coordinates of each row, over the whole model
    values: torch.Tensor  # (m, k) their values
    shapes: list[tuple[int, ...]]  # the model's parameter shapes (the blocks of P)

    def dense(self) -> StackedTensors:
        """The (m, P) stacked matrix, zeros elsewhere."""
        m = self.index.shape[0]
        out = StackedTensors.zeros(self.shapes, m, self.index.device, self.values.dtype)
        self.add_to(out)
        return out

    def matrix(self) -> torch.Tensor:
        """The node-major (m, P) matrix, as :meth:`StackedTensors.matrix` gives it."""
        return self.dense().matrix()

    def add_to(self, target: StackedTensors, rows: torch.Tensor | None = None) -> None:
        """``target[rows] += self`` (rows: the target's row of each of these m rows;
        None: the same rows), block by block, touching k entries a row."""
        m = self.index.shape[0]
        rows = torch.arange(m, device=self.index.device) if rows is None else rows
        lo = 0
        for block in target.blocks:
            width = block.shape[1]
            inside = (self.index >= lo) & (self.index < lo + width)  # (m, k)
            flat = (rows.unsqueeze(1) * width + self.index - lo)[inside]
            block.view(-1).index_add_(0, flat, self.values[inside])
            lo += width


@dataclass
class Message:
    """What the m sending nodes of one exchange sent, as the receivers decode it.

    ``kind`` says how a receiver uses it: ``model`` replaces what it holds of the sender
    (a whole model, exact or compressed); ``difference`` is added to it (CHOCO-SGD's
    compressed update of a public copy).
    """

    decoded: StackedTensors | None  # (m, P) decoded content, one row per sender
    bytes: int  # one message on the wire, header included (equal for every sender)
    kind: Literal["model", "difference"] = "model"
    exact: bool = True  # the decoded content is exactly what was sent (no compression)
    sparse: SparseRows | None = field(default=None)  # a sparsifier's, kept sparse

    @property
    def values(self) -> StackedTensors:
        """(m, P) the decoded messages (made from the sparse form on first use)."""
        if self.decoded is None:
            self.decoded = self.sparse.dense()
        return self.decoded
