"""The network: every message between nodes, or between nodes and a coordinator, passes here.

Protocols never touch the ledger or the mixing matrix. They call primitives that move
models *and* charge the ledger in one step, so what is counted is exactly what moved:

- :meth:`Network.gossip`: every node sends its model to each neighbour and replaces
  it by the W-weighted average of what it holds (``X <- W X``);
- :meth:`Network.send_to_neighbours` and :meth:`Network.mix_last_sent`: some nodes
  send their model to their neighbours; every node then mixes with the models last
  sent (event-triggered gossip);
- :meth:`Network.upload`: nodes send their models to the coordinator;
  :meth:`Network.request`: the coordinator asks nodes for their models (a control
  message each) and they upload; :meth:`Network.coordinator_mean`: the average of
  models the coordinator received this round; :meth:`Network.download`: the
  coordinator sends a model to nodes, which adopt it.

This is the layer where the conditions of real fleets belong: which nodes are online
(:attr:`Network.online`, which :meth:`begin_round` will set from an availability
model), which messages arrive (every primitive returns what was *received*, a mask a
lossy network makes smaller than what was sent), and on how many processes the nodes
live (a sharded network overrides the primitives with collectives). Today every node
is online, every message arrives and everything is in one process: ``online`` is all
True and what is received is what was sent; the interface already has the shape those
conditions need.

Message sizes (``gossamer.sim.accounting``): a model message carries the parameters
plus a 32-byte header; a request is the header alone.
"""

from __future__ import annotations

import torch

from gossamer.sim.accounting import HEADER_BYTES, Ledger
from gossamer.sim.stacked import StackedTensors
from gossamer.sim.topology import Mixer, Topology


class Network:
    """Moves models between nodes and a coordinator, and charges every message."""

    def __init__(
        self,
        params: StackedTensors,
        ledger: Ledger,
        message_bytes: int,
        topology: Topology | None = None,
        mixer: Mixer | None = None,
    ):
        self.params = params  # (N, P) the population's models, changed in place
        self.ledger = ledger
        self.message_bytes = message_bytes  # one model message, header included
        self.topology = topology  # None for protocols that talk only to a coordinator
        self.mixer = mixer
        n = params.num_nodes
        self.num_nodes = n
        self.online = torch.ones(n, dtype=torch.bool)  # (N,) who takes part (today: all)
        self._held = torch.zeros(n, dtype=torch.bool)  # (N,) models the coordinator holds
        if topology is not None:
            self.degree = torch.as_tensor(topology.degree)  # (N,) neighbours per node
            edges = topology.rows != topology.cols
            # (E,) directed edges j -> i as (receiver i, sender j), self loops excluded
            self._edges = (
                torch.as_tensor(topology.rows[edges]),
                torch.as_tensor(topology.cols[edges]),
            )

    def begin_round(self, round: int) -> None:
        """Round ``round`` (0-based) starts: the coordinator holds no model yet (and, with an
        availability model, ``online`` becomes that round's online nodes)."""
        self._held.zero_()

    # ------------------------------------------------------------ node to node
    def gossip(self) -> torch.Tensor:
        """Every node sends its model to each neighbour and mixes: ``X <- W X``.

        Returns (N,) the model messages each node received.
        """
        self.ledger.record_exchange(self.degree, self.degree, self.message_bytes)
        self.mixer.apply_(self.params.blocks)
        return self.degree.clone()

    def send_to_neighbours(self, senders: torch.Tensor) -> torch.Tensor:
        """The nodes where ``senders`` (N,) bool is set send their model to each neighbour.

        Returns (N,) the model messages each node received.
        """
        senders = senders.cpu()
        receiver, sender = self._edges
        received = torch.zeros(self.num_nodes, dtype=torch.int64)
        received.index_add_(0, receiver, senders[sender].long())  # neighbours that sent to i
        self.ledger.record_exchange(senders * self.degree, received, self.message_bytes)
        return received

    def mix_last_sent(self, last_sent: StackedTensors, consensus_step: float) -> None:
        """Every node mixes with the models last sent: ``x <- x + gamma (W s - s)``.

        ``last_sent`` (N, P) holds s_j, the model node j last sent (every neighbour
        holds the same s_j). The consensus step of CHOCO-SGD (Koloskova, Stich, Jaggi,
        ICML 2019); with a doubly stochastic W it preserves the network mean.
        """
        for mine, sent in zip(self.params.blocks, last_sent.blocks, strict=True):
            mixed = sent.clone()
            self.mixer.apply_([mixed])  # W s
            # x <- (x - s) + (1 - gamma) s + gamma W s: with gamma 1 and x == s this is
            # 0 + W s exactly, so every node sending every round is D-PSGD bit for bit.
            mine.sub_(sent)
            if consensus_step != 1.0:
                mine.add_(sent, alpha=1.0 - consensus_step)
            mine.add_(mixed, alpha=consensus_step)

    # ------------------------------------------------------------ nodes and a coordinator
    def upload(self, nodes: torch.Tensor) -> torch.Tensor:
        """The nodes where ``nodes`` (N,) bool is set send their models to the coordinator.

        Returns (N,) bool: the models the coordinator received.
        """
        nodes = nodes.cpu()
        self.ledger.record_upload(nodes, self.message_bytes)
        self._held |= nodes
        return nodes.clone()

    def request(self, nodes: torch.Tensor) -> torch.Tensor:
        """The coordinator asks these nodes for their models (a control message to each);
        they upload. Returns (N,) bool: the models the coordinator received."""
        nodes = nodes.cpu()
        self.ledger.record_download(nodes, HEADER_BYTES)  # the request: a header alone
        return self.upload(nodes)

    def coordinator_mean(self, nodes: torch.Tensor | None = None) -> StackedTensors:
        """(1, P) the average of the models of ``nodes`` (N,) bool (None: all), which the
        coordinator must hold: it averages only what it received this round."""
        if nodes is None:
            nodes = torch.ones(self.num_nodes, dtype=torch.bool)
        nodes = nodes.cpu()
        if bool((nodes & ~self._held).any()):
            missing = (nodes & ~self._held).nonzero().squeeze(1).tolist()
            raise RuntimeError(f"the coordinator averages models it does not hold: {missing}")
        if bool(nodes.all()):
            return self.params.mean()
        return self.params.mean(nodes=nodes.to(self.params.device))

    def download(self, nodes: torch.Tensor | None, model: StackedTensors) -> torch.Tensor:
        """The coordinator sends ``model`` (1, P) to ``nodes`` (N,) bool (None: all); they
        adopt it. Returns (N,) bool: the nodes that received it."""
        if nodes is None:
            nodes = torch.ones(self.num_nodes, dtype=torch.bool)
            self.params.fill_rows_(model)
        else:
            nodes = nodes.cpu()
            self.params.fill_rows_(model, nodes.to(self.params.device))
        self.ledger.record_download(nodes, self.message_bytes)
        return nodes.clone()
