"""Nodes and a coordinator: uploads, requests, the coordinator's aggregate, downloads.

The coordinator combines the models it received with the protocol's aggregator
(``gossamer.sim.network.aggregation``): by default their mean, a float64 sum reduced
over ranks; any other gathers the received models onto every rank and combines them
there (the same numbers on every rank).

Uncompressed, the coordinator holds the very models it received. With compression
(``protocol.compression``) a node uploads the compressed change of its model since the
model it last received from the coordinator (initially the common start model), which
both sides know: node i sends ``C(x_i - b_i)`` and the coordinator holds
``b_i + C(x_i - b_i)``, which it averages. Downloads are whole models (a node that
missed earlier ones needs the model itself; docs/compression.md), and each node's
``b_i`` becomes the model it received. With ``error_feedback: ef21`` the estimate
h_i the coordinator holds persists between uploads: node i sends ``C(x_i - h_i)`` and
both add it to h_i (a lost upload moves neither: the sender learns of the loss from
its transport), and a download sets h_i to the model sent.
"""

from __future__ import annotations

from typing import Any

import torch

from gossamer.sim.accounting import HEADER_BYTES
from gossamer.sim.shard import NodeRows
from gossamer.sim.stacked import StackedTensors


class CoordinatorLink:
    """The coordinator primitives of :class:`~gossamer.sim.network.Network`."""

    def _init_coordinator(self) -> None:
        self._held = torch.zeros(self.num_nodes, dtype=torch.bool)  # (N,) models it holds
        self._base: StackedTensors | None = None  # (n, P) b_i: last model from the coordinator
        self._estimate: StackedTensors | None = None  # (n, P) what the coordinator holds

    def upload(self, nodes: torch.Tensor) -> torch.Tensor:
        """The online nodes where ``nodes`` (N,) bool is set send their models to the
        coordinator. Returns (N,) bool: the models the coordinator received."""
        attempted = nodes.cpu() & self.online
        received = attempted.clone()
        if not self.ideal:
            ids = attempted.nonzero().squeeze(1)
            received[ids] = self._arrives(ids, torch.full_like(ids, self.num_nodes))
        self.ledger.record_upload(attempted, self.model_message_bytes, delivered=received)
        if self.compressed:
            self._estimate_uploads(attempted, received)
        self._held |= received
        return received

    def _estimate_uploads(self, attempted: torch.Tensor, received: torch.Tensor) -> None:
        """Encode the senders' changes (every sender: its residual moves even when the
        message is lost) and keep ``b_i + C(x_i - b_i)`` for the ones received."""
        device = self.params.device
        if self._base is None:
            self._base = StackedTensors.zeros(self.params.shapes, self.params.num_nodes, device)
            self._base.fill_rows_(self._start)
            self._estimate = self._base.clone()
        rows = self.shard.local(attempted).to(device).nonzero().squeeze(1)
        change = self.params.index_select(rows)
        # EF21 keeps moving the estimate h_i by compressed changes; else b_i + C(x_i - b_i)
        base = (self._estimate if self.ef21 else self._base).index_select(rows)
        for block, start in zip(change.blocks, base.blocks, strict=True):
            block.sub_(start)
        decoded = self.encode(change, rows, kind="difference").values
        for block, start in zip(decoded.blocks, base.blocks, strict=True):
            block.add_(start)  # b_i + C(x_i - b_i)
        kept = self.shard.local(received).to(device)[rows]  # (m,) which ones arrived
        self._estimate.index_copy_(rows[kept], decoded.index_select(kept.nonzero().squeeze(1)))

    def request(self, nodes: torch.Tensor) -> torch.Tensor:
        """The coordinator asks these nodes for their models (a control message to each;
        offline nodes do not answer); they upload. Returns (N,) bool: the models the
        coordinator received."""
        asked = self._to_nodes(nodes.cpu(), HEADER_BYTES)  # the request: a header alone
        return self.upload(asked)

    def coordinator_aggregate(self, nodes: torch.Tensor | None = None) -> StackedTensors:
        """(1, P) the protocol's aggregate (``protocol.aggregator``; by default the mean)
        of the models of ``nodes`` (N,) bool (None: all), which the coordinator must
        hold: it combines only what it received (with compression, what it decoded)."""
        if nodes is None:
            nodes = torch.ones(self.num_nodes, dtype=torch.bool)
        nodes = nodes.cpu()
        if bool((nodes & ~self._held).any()):
            missing = (nodes & ~self._held).nonzero().squeeze(1).tolist()
            raise RuntimeError(f"the coordinator combines models it does not hold: {missing}")
        held = self._estimate if self.compressed else self.params
        if self.aggregator.linear:
            return self.shard.mean(held, None if bool(nodes.all()) else nodes)
        ids = nodes.nonzero().squeeze(1).to(held.device)
        # every rank holds all the received models (gathered) and combines them alike
        stack = [  # slot-major (S, 1, P_l), as (1, S, P_l) views
            self.shard.gather(block).index_select(0, ids)[:, None].transpose(0, 1)
            for block in held.blocks
        ]
        count = torch.tensor([len(ids)], device=held.device)
        return StackedTensors(held.shapes, self.aggregator.aggregate(stack, count, None))

    def download(self, nodes: torch.Tensor | None, model: StackedTensors) -> torch.Tensor:
        """The coordinator sends ``model`` (1, P) to ``nodes`` (N,) bool (None: all); those
        it reaches adopt it. Returns (N,) bool: the nodes that received it."""
        everyone = nodes is None
        nodes = torch.ones(self.num_nodes, dtype=torch.bool) if everyone else nodes.cpu()
        received = self._to_nodes(nodes, self.message_bytes)
        targets = [t for t in (self.params, self._base, self._estimate) if t is not None]
        for target in targets:
            if everyone and bool(received.all()):
                target.fill_rows_(model)
            else:
                target.fill_rows_(model, self.shard.local(received).to(self.params.device))
        return received

    def _to_nodes(self, nodes: torch.Tensor, message_bytes: int) -> torch.Tensor:
        """Messages from the coordinator to ``nodes``: charged; returns those received."""
        received = nodes & self.online
        if not self.ideal:
            ids = received.nonzero().squeeze(1)
            received[ids] = self._arrives(torch.full_like(ids, self.num_nodes), ids)
        self.ledger.record_download(nodes, message_bytes, delivered=received)
        return received

    def _coordinator_state(self) -> dict[str, Any]:
        if self._base is None:
            return {}
        lo, total = self.shard.lo, self.num_nodes
        return {
            "base": [NodeRows(block, lo, total) for block in self._base.blocks],
            "estimate": [NodeRows(block, lo, total) for block in self._estimate.blocks],
        }

    def _load_coordinator_state(self, state: dict[str, Any]) -> None:
        if "base" not in state:
            return
        self._base = StackedTensors.zeros(
            self.params.shapes, self.params.num_nodes, self.params.device
        )
        self._estimate = self._base.clone()
        for block, saved in zip(self._base.blocks, state["base"], strict=True):
            block.copy_(saved)
        for block, saved in zip(self._estimate.blocks, state["estimate"], strict=True):
            block.copy_(saved)
