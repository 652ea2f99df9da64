"""Public models: what each node has published of its model, and its neighbours' copies.

Event-triggered gossip (``dynamic_gossip``) and CHOCO-SGD (``choco``) mix through
*public* models rather than the models themselves: node i publishes s_i, by sending its
model (s_i <- x_i) or a compressed change (s_i <- s_i + C(x_i - s_i)), and every node
mixes with the public models it holds of its neighbours:

    x_i <- x_i + gamma (sum_j W_ij s_j - s_i)    (W_ii s_i included in the sum)

the consensus step of CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019, Algorithm 1,
line 8). One meaning on every network: s_j in node i's sum is *what i holds of j*,
which the network keeps, never a value the caller passes. On an ideal network every
message arrives, so every neighbour of j holds j's own s_j and one (n, P) tensor of
public models serves all of them (bit for bit the per-edge copies; tested). Under
conditions each node keeps a per-edge copy of each neighbour's public model, updated
only by the messages that arrived: a lost model leaves the copy stale until the next
one arrives; a lost *change* leaves it off by that change for good (CHOCO-SGD has no
resynchronization; the copies then no longer sum to what their owners hold, and the
network mean drifts).
"""

from __future__ import annotations

from typing import Any

import torch

from gossamer.config import ConfigError
from gossamer.sim.network.message import Message
from gossamer.sim.shard import NodeRows
from gossamer.sim.stacked import StackedTensors


class PublicModels:
    """The public-model primitives of :class:`~gossamer.sim.network.Network`."""

    def _init_public(self) -> None:
        self._public: StackedTensors | None = None  # (n, P) each node's own public model
        self._public_start: StackedTensors | None = None  # (1, P) what everyone starts with
        self._copies: StackedTensors | None = None  # (e, P) copies held, per edge by receiver
        self._gather: torch.Tensor | None = None  # (n, e) W's entries over those copies

    @property
    def public(self) -> StackedTensors:
        """(n, P) each of this rank's nodes' own public model."""
        if self._public is None:
            self.start_public()
        return self._public

    def start_public(self, start: StackedTensors | None = None) -> None:
        """Every node's public model, and every copy of it, starts at ``start`` (1, P),
        which every node knows; default: the common start model. CHOCO-SGD starts at
        zero (its Algorithm 1)."""
        start = self._start if start is None else start
        self._public_start = start.clone()
        self._public = StackedTensors.zeros(
            self.params.shapes, self.params.num_nodes, self.params.device
        )
        self._public.fill_rows_(start)
        self._copies = None

    def _fixed_graph(self, what: str) -> None:
        if self.schedule is not None:
            raise ConfigError(
                f"topology.kind: {what} keeps a copy of each neighbour's model and needs a "
                "fixed graph; the protocol's config section must not say time_varying = True"
            )

    def publish(self, senders: torch.Tensor, message: Message | None = None) -> torch.Tensor:
        """The online nodes where ``senders`` (N,) bool is set publish their model to
        each neighbour: each sender's public model, and every copy of it the message
        reaches, takes the model (uncompressed) or adds the compressed change
        ``C(x_i - s_i)`` (``protocol.compression``). A protocol may pass its own
        ``message`` (one row per sender of this rank, in node order).

        Returns (N,) the messages each node received.
        """
        self._fixed_graph("publish")
        senders = senders.cpu() & self.online
        public, device = self.public, self.params.device
        rows = self.shard.local(senders).to(device).nonzero().squeeze(1)
        if message is None:
            message = self._public_message(rows)
        _update(public, rows, message)
        receiver, sender = self._edges
        if self.ideal:
            received = torch.zeros(self.num_nodes, dtype=torch.int64)
            received.index_add_(0, receiver, senders[sender].long())  # neighbours that sent
            self.ledger.record_exchange(senders * self.degree, received, message.bytes)
            return received
        arrived = self._send(senders[sender], message.bytes)
        copies = self._edge_copies()
        if bool(arrived.any()):  # what arrived updates the receiver's copy; the rest stays
            first, last = self.edge_range  # this rank's edges: their receivers are its nodes
            index = arrived[first:last].nonzero().squeeze(1)
            halo_rows = self.mixer.halo.position[sender[first:last][index].numpy()]
            halo_rows = torch.as_tensor(halo_rows, device=device)
            index = index.to(device)
            sent = StackedTensors.zeros(self.params.shapes, self.params.num_nodes, device)
            sent.index_copy_(rows, message.values)
            for block, held in zip(sent.blocks, copies.blocks, strict=True):
                values = self.mixer.halo.exchange(block).index_select(0, halo_rows)
                if message.kind == "model":
                    held.index_copy_(0, index, values)
                else:
                    held.index_add_(0, index, values)
        return torch.bincount(receiver[arrived], minlength=self.num_nodes)

    def _public_message(self, rows: torch.Tensor) -> Message:
        """The model of each sender at local ``rows``, or its compressed change."""
        everyone = len(rows) == self.params.num_nodes
        if not self.compressed:
            return self.encode(self.params if everyone else self.params.index_select(rows))
        if everyone:  # x - s, without gathering rows
            pairs = zip(self.params.blocks, self.public.blocks, strict=True)
            change = StackedTensors(self.params.shapes, [torch.sub(x, s) for x, s in pairs])
            return self.encode(change, None, kind="difference")
        change = self.params.index_select(rows)
        for block, public in zip(change.blocks, self.public.blocks, strict=True):
            block.sub_(public.index_select(0, rows))  # x_i - s_i
        return self.encode(change, rows, kind="difference")

    def consensus(self, step: float) -> None:
        """Every online node mixes with the public models it holds: ``x_i <- x_i + gamma
        (sum_j W_ij s_j - s_i)``, W_ii s_i its own (the static graph's weights)."""
        public = self.public
        if self.ideal:
            for mine, sent in zip(self.params.blocks, public.blocks, strict=True):
                mixed = sent.clone()
                self.mixer.apply_([mixed])  # W s
                if step != 1.0:  # x <- x + gamma (W s - s): two passes over x's size
                    mine.add_(mixed.sub_(sent), alpha=step)
                    continue
                # x <- (x - s) + W s: when x == s this is 0 + W s exactly, so every node
                # sending its model every round is D-PSGD bit for bit.
                mine.sub_(sent).add_(mixed)
            return
        self._fixed_graph("consensus")
        gather = self._gather_matrix()
        device = self.params.device
        self_weight = self.shard.local(self._self_weight).to(device=device, dtype=torch.float32)
        self_weight = self_weight[:, None]
        online = self.shard.local(self.online).to(device)[:, None]
        copies = self._edge_copies()
        for mine, sent, held in zip(self.params.blocks, public.blocks, copies.blocks, strict=True):
            mixed = torch.sparse.mm(gather, held).add_(self_weight * sent).sub_(sent)
            mine.add_(torch.where(online, mixed, 0.0), alpha=step)

    def _mix_estimates(self) -> None:
        """EF21's gossip (Richtarik, Sokolov, Fatkhullin, NeurIPS 2021, adapted to models):
        ``x_i <- W_ii x_i + sum_j W_ij h_j`` over the estimates h_j that node i holds of
        its neighbours' models (its own model exactly); offline nodes keep theirs."""
        estimates = self.public
        device = self.params.device
        self_weight = self.shard.local(self._self_weight).to(device=device, dtype=torch.float32)
        self_weight = self_weight[:, None]
        if self.ideal:
            for mine, held in zip(self.params.blocks, estimates.blocks, strict=True):
                mixed = held.clone()
                self.mixer.apply_([mixed])  # W h
                mine.sub_(held).mul_(self_weight).add_(mixed)  # W_ii (x - h) + W h
            return
        gather = self._gather_matrix()
        online = self.shard.local(self.online).to(device)[:, None]
        copies = self._edge_copies()
        for mine, held in zip(self.params.blocks, copies.blocks, strict=True):
            mixed = torch.sparse.mm(gather, held).add_(self_weight * mine)  # sum_j W_ij h_ij
            mine.copy_(torch.where(online, mixed, mine))

    def _edge_copies(self) -> StackedTensors:
        """(e, P) the public model each of this rank's nodes holds of each neighbour (its
        edges, by receiver); at first the public models' common start."""
        if self._copies is None:
            edges = self.edge_range[1] - self.edge_range[0]
            self._copies = StackedTensors.zeros(
                self.params.shapes, edges, self.params.device, self.params.blocks[0].dtype
            )
            self._copies.fill_rows_(self._public_start)
        return self._copies

    def _gather_matrix(self) -> torch.Tensor:
        """(n, e) sparse: row i sums W_ij x copy_e over this rank's edges e = j -> i
        (built once)."""
        if self._gather is None:
            first, last = self.edge_range
            receiver = self._edges[0][first:last] - self.shard.lo
            n, edges = self.shard.local_nodes, last - first
            weight = self._edge_weight[first:last]
            self._gather = (
                torch.sparse_coo_tensor(
                    torch.stack([receiver, torch.arange(edges)]), weight, (n, edges)
                )
                .to(dtype=torch.float32)
                .coalesce()
                .to_sparse_csr()
                .to(self.params.device)
            )
        return self._gather

    def _public_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self._public is not None:
            total, lo = self.num_nodes, self.shard.lo
            state["public"] = [NodeRows(b, lo, total) for b in self._public.blocks]
            state["public_start"] = self._public_start.matrix()
        if self._copies is not None:
            first, edges = self.edge_range[0], len(self._edges[0])
            state["copies"] = [
                NodeRows(block, first, edges, "edges") for block in self._copies.blocks
            ]
        return state

    def _load_public_state(self, state: dict[str, Any]) -> None:
        if "public" in state:
            start = state["public_start"].to(self.params.device)
            self.start_public(StackedTensors.from_matrix(start, self.params.shapes))
            for block, saved in zip(self._public.blocks, state["public"], strict=True):
                block.copy_(saved)
        if "copies" in state:
            for block, saved in zip(self._edge_copies().blocks, state["copies"], strict=True):
                block.copy_(saved)


def _update(public: StackedTensors, rows: torch.Tensor, message: Message) -> None:
    """The senders' own public models take (``model``) or add (``difference``) their
    message."""
    if message.kind == "difference" and message.sparse is not None:  # k entries a row
        message.sparse.add_to(public, rows)
        return
    everyone = len(rows) == public.num_nodes
    for block, sent in zip(public.blocks, message.values.blocks, strict=True):
        if message.kind == "model" and everyone:
            block.copy_(sent)
        elif message.kind == "model":
            block.index_copy_(0, rows, sent)
        elif everyone:
            block.add_(sent)
        else:
            block.index_add_(0, rows, sent)
