"""The network: every message between nodes, or between nodes and a coordinator, passes here.

Protocols never touch the ledger or the mixing matrix. They call primitives that move
models *and* charge the ledger in one step, so what is counted is exactly what moved:

- :meth:`Network.gossip`: every online node sends its model to each neighbour and
  replaces it by the W-weighted average of what it holds (``X <- W X``);
- :meth:`Network.send_to_neighbours` and :meth:`Network.mix_last_sent`: some nodes
  send their model to their neighbours; every node then mixes with the models it
  last received (event-triggered gossip);
- :meth:`Network.upload`: nodes send their models to the coordinator;
  :meth:`Network.request`: the coordinator asks nodes for their models (a control
  message each) and they upload; :meth:`Network.coordinator_mean`: the average of
  models the coordinator received this round; :meth:`Network.download`: the
  coordinator sends a model to nodes, which adopt it.

**Conditions** (``network:``, ``gossamer.sim.conditions``): ``online`` is the round's
online mask, set by :meth:`begin_round`; every message arrives with probability
``delivery``. Each primitive returns what was *received*. The rules, the same for
every protocol:

- an offline node neither sends nor receives; an online node sends to each of its
  neighbours (the coordinator to each node it addresses), and a message to an offline
  node is lost. Senders are charged (energy) for what they sent, receivers for what
  they received; the ledger counts every message as attempted, and as delivered or
  lost (``attempted = delivered + lost``, per node and per round);
- gossip mixes an edge only when both of its messages arrived, with Metropolis-
  Hastings (or the configured) weights recomputed on that live subgraph: W stays
  symmetric and doubly stochastic, so the mean model of all nodes is preserved, and
  an offline node keeps its model (W_ii = 1). A one-way delivery is received (and
  charged) but not used: our choice over push-sum (Kempe et al. 2003), which needs
  acknowledgements to keep the mean when messages are lost;
- with event-triggered gossip each node keeps the last model it received from each
  neighbour: a lost message leaves that copy stale (per-edge copies, allocated only
  under conditions).

With the defaults (everyone online, every message delivered) the ideal-network code
path runs, and results are bit for bit those of a network without conditions.

**Sharded over ranks** (``gossamer.sim.shard``), ``params`` holds this rank's nodes and
everything else here is replicated: masks, draws and the ledger are computed over all
N nodes on every rank from the same inputs, and only model rows move between ranks
(the mixer's halo, the coordinator's float64 sums).

Message sizes (``gossamer.sim.accounting``): a model message carries the parameters
plus a 32-byte header; a request is the header alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gossamer.config import ConfigError, NetworkConfig
from gossamer.sim.accounting import HEADER_BYTES, Ledger
from gossamer.sim.conditions import Availability, delivered
from gossamer.sim.shard import NodeRows, Shard
from gossamer.sim.stacked import StackedTensors
from gossamer.sim.timevarying import RoundGraph, TimeVarying, round_spectral_gap, undirected
from gossamer.sim.topology import Mixer, Topology, edge_weights


class Network:
    """Moves models between nodes and a coordinator, and charges every message."""

    def __init__(
        self,
        params: StackedTensors,
        ledger: Ledger,
        message_bytes: int,
        topology: Topology | None = None,
        mixer: Mixer | None = None,
        conditions: NetworkConfig | None = None,
        seed: int = 0,
        weights: str = "metropolis_hastings",
        schedule: TimeVarying | None = None,
        stragglers: torch.Tensor | None = None,
        links: torch.Tensor | None = None,
        availability: Availability | None = None,
        shard: Shard | None = None,
    ):
        self.params = params  # (n, P) the population's (this rank's) models, changed in place
        self.ledger = ledger
        self.message_bytes = message_bytes  # one model message, header included
        self.topology = topology  # None for protocols that talk only to a coordinator
        self.mixer = mixer
        self.shard = shard or Shard.single(params.num_nodes)
        n = self.shard.num_nodes
        self.num_nodes, self.seed = n, seed
        conditions = conditions or NetworkConfig()
        self.ideal = conditions.ideal  # everyone online, every message delivered
        self.delivery = conditions.delivery
        self.availability = availability or Availability(conditions.availability, n, seed)
        self.online = torch.ones(n, dtype=torch.bool)  # (N,) who takes part this round
        self.round, self._exchange = 0, 0  # the round, and its count of exchanges so far
        self._held = torch.zeros(n, dtype=torch.bool)  # (N,) models the coordinator holds
        self._start = params.rows(0, 1).clone()  # (1, P) the common start model
        self._copies: StackedTensors | None = None  # (e, P) last model received per edge
        self._gather: torch.Tensor | None = None  # (n, e) W's entries over those copies
        self.weight_kind = weights  # recomputed on the live subgraph under conditions
        self.schedule = schedule  # the graph of each round, for time-varying topologies
        # (N,) nodes too slow to train within the round's deadline (network.deadline)
        self.stragglers = stragglers
        # (N + 1,) reliability of each node's link (network.link_delivery); the last
        # entry is the coordinator's (1). None: every link as reliable as the network
        self.links = links
        self.round_stats: dict[str, float] = {}  # this round's network statistics
        if topology is not None:
            self.degree = torch.as_tensor(topology.degree)  # (N,) neighbours per node
            self._static = undirected(topology.rows, topology.cols, False, n)
            # (E,) directed edges j -> i as (receiver i, sender j), self loops excluded
            self._edges = (self._static.receiver, self._static.sender)
            diagonal = topology.rows == topology.cols
            self._self_weight = torch.zeros(n, dtype=torch.float64)  # (N,) static W_ii
            self._self_weight[topology.rows[diagonal]] = torch.as_tensor(topology.weights[diagonal])
            # (E,) W_ij of those edges (the topology's entries, ordered as the edges)
            self._edge_weight = _edge_weights(topology, self._static)
            # this rank's edges (receiver among its nodes): a contiguous range
            receivers = self._static.receiver.numpy()
            self.edge_range = (
                int(np.searchsorted(receivers, self.shard.lo)),
                int(np.searchsorted(receivers, self.shard.hi)),
            )

    def begin_round(self, round: int) -> None:
        """Round ``round`` (0-based) starts: who is online; the coordinator holds nothing."""
        self.round, self._exchange = round, 0
        self._held.zero_()
        self.round_stats = {}
        if not self.ideal:
            self.online = self.availability.online(round)

    @property
    def everyone_trains(self) -> bool:
        """Every node online and none too slow for the deadline: no mask to apply."""
        return self.ideal and self.stragglers is None

    @property
    def trainers(self) -> torch.Tensor:
        """(N,) bool: the nodes that can train this round (online, not stragglers)."""
        if self.stragglers is None:
            return self.online
        return self.online & ~self.stragglers

    def _arrives(self, senders: torch.Tensor, receivers: torch.Tensor) -> torch.Tensor:
        """(M,) bool: which of these messages (sender -> receiver, the coordinator being
        node N) arrive; each call is a new exchange of the round, with its own draws."""
        self._exchange += 1
        return delivered(
            self.seed, self.round, self._exchange, senders, receivers, self.delivery, self.links
        )

    # ------------------------------------------------------------ node to node
    def gossip(self) -> torch.Tensor:
        """Every online node sends its model to each neighbour; every node mixes with what
        arrived both ways: ``X <- W X`` on the live subgraph.

        Returns (N,) the model messages each node received.
        """
        if self.ideal and self.schedule is None:
            self.ledger.record_exchange(self.degree, self.degree, self.message_bytes)
            self.mixer.apply_(self.params.blocks)
            return self.degree.clone()
        graph = self.schedule.at(self.round) if self.schedule is not None else self._static
        arrived = self._send(self.online[graph.sender], graph)  # (E,)
        if graph.reverse is not None:  # undirected: mixed when both directions arrived
            self._mix_live(graph, arrived & arrived[graph.reverse])
        else:  # directed: each node averages itself and what arrived, equally
            self._average_arrived(graph, arrived)
        return torch.bincount(graph.receiver[arrived], minlength=self.num_nodes)

    def _send(self, attempted: torch.Tensor, graph: RoundGraph | None = None) -> torch.Tensor:
        """Messages along the directed edges (of ``graph``, by default the static one)
        where ``attempted`` (E,) is set: charge them; returns (E,) which arrived."""
        graph = graph or self._static
        receiver, sender = graph.receiver, graph.sender
        arrived = attempted & self.online[receiver] & self._arrives(sender, receiver)
        n = self.num_nodes
        self.ledger.record_exchange(
            torch.bincount(sender[attempted], minlength=n),
            torch.bincount(receiver[arrived], minlength=n),
            self.message_bytes,
            delivered=torch.bincount(sender[arrived], minlength=n),
        )
        return arrived

    def _mix_live(self, graph: RoundGraph, live: torch.Tensor) -> None:
        """X <- W X with the configured weights on the subgraph of ``live`` (E,) edges."""
        rows, cols = graph.receiver[live].numpy(), graph.sender[live].numpy()
        degree = np.bincount(rows, minlength=self.num_nodes)
        off, diagonal = edge_weights(self.weight_kind, degree, rows, cols)
        self._mix(graph, rows, cols, off, diagonal)

    def _average_arrived(self, graph: RoundGraph, arrived: torch.Tensor) -> None:
        """x_i <- (x_i + sum of the models that arrived) / (1 + their count)."""
        rows, cols = graph.receiver[arrived].numpy(), graph.sender[arrived].numpy()
        share = 1.0 / (1.0 + np.bincount(rows, minlength=self.num_nodes))  # (N,)
        self._mix(graph, rows, cols, share[rows], share)

    def _mix(self, graph, rows, cols, off, diagonal) -> None:
        """Apply the round's W (off-diagonal entries W[rows, cols] = off, then the
        diagonal); on a time-varying graph, record its spectral gap when it changed."""
        nodes = np.arange(self.num_nodes)
        rows, cols = np.concatenate([rows, nodes]), np.concatenate([cols, nodes])
        weights = np.concatenate([off, diagonal])
        self.mixer.set_weights(rows, cols, weights, self.num_nodes)
        self.mixer.apply_(self.params.blocks)
        if self.schedule is not None and graph.changed:
            self.round_stats["spectral_gap"] = round_spectral_gap(
                rows, cols, weights, self.num_nodes, symmetric=graph.reverse is not None
            )

    def _fixed_graph(self, what: str) -> None:
        if self.schedule is not None:
            raise ConfigError(
                f"topology.kind: {what} keeps a copy of each neighbour's model and needs a "
                "fixed graph; the protocol's config section must not say time_varying = True"
            )

    def send_to_neighbours(self, senders: torch.Tensor) -> torch.Tensor:
        """The nodes where ``senders`` (N,) bool is set send their current model to each
        neighbour; each receiver keeps it as that neighbour's latest model.

        Returns (N,) the model messages each node received.
        """
        self._fixed_graph("send_to_neighbours")
        senders = senders.cpu()
        receiver, sender = self._edges
        if self.ideal:
            received = torch.zeros(self.num_nodes, dtype=torch.int64)
            received.index_add_(0, receiver, senders[sender].long())  # neighbours that sent
            self.ledger.record_exchange(senders * self.degree, received, self.message_bytes)
            return received
        arrived = self._send(senders[sender] & self.online[sender])
        copies = self._edge_copies()
        if bool(arrived.any()):  # what arrived replaces the receiver's copy; the rest stays stale
            first, last = self.edge_range  # this rank's edges: their receivers are its nodes
            index = arrived[first:last].nonzero().squeeze(1)
            rows = self.mixer.halo.position[sender[first:last][index].numpy()]
            rows = torch.as_tensor(rows, device=self.params.device)
            index = index.to(self.params.device)
            for block, held in zip(self.params.blocks, copies.blocks, strict=True):
                sent = self.mixer.halo.exchange(block)  # on every rank: a collective
                held.index_copy_(0, index, sent.index_select(0, rows))
        return torch.bincount(receiver[arrived], minlength=self.num_nodes)

    def _edge_copies(self) -> StackedTensors:
        """(e, P) the model each of this rank's nodes holds of each neighbour (its
        edges, by receiver); at first the common start model, which every node knows."""
        if self._copies is None:
            edges = self.edge_range[1] - self.edge_range[0]
            self._copies = StackedTensors.zeros(
                self.params.shapes, edges, self.params.device, self.params.blocks[0].dtype
            )
            self._copies.fill_rows_(self._start)
        return self._copies

    def mix_last_sent(self, last_sent: StackedTensors, consensus_step: float) -> None:
        """Every online node mixes with the models it holds: ``x_i <- x_i + gamma (sum_j
        W_ij s_j - s_i)`` with s_i its own last-sent model and s_j its copy of neighbour
        j's (W_ii s_i included in the sum).

        The consensus step of CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019). When every
        copy is current (an ideal network) it is ``x <- x + gamma (W s - s)``, which
        preserves the network mean for a doubly stochastic W; stale copies do not.
        """
        if self.ideal:
            for mine, sent in zip(self.params.blocks, last_sent.blocks, strict=True):
                mixed = sent.clone()
                self.mixer.apply_([mixed])  # W s
                # x <- (x - s) + (1 - gamma) s + gamma W s: with gamma 1 and x == s this is
                # 0 + W s exactly, so every node sending every round is D-PSGD bit for bit.
                mine.sub_(sent)
                if consensus_step != 1.0:
                    mine.add_(sent, alpha=1.0 - consensus_step)
                mine.add_(mixed, alpha=consensus_step)
            return
        self._fixed_graph("mix_last_sent")
        gather = self._gather_matrix()
        device = self.params.device
        self_weight = self.shard.local(self._self_weight).to(device=device, dtype=torch.float32)
        self_weight = self_weight[:, None]
        online = self.shard.local(self.online).to(device)[:, None]
        copies = self._edge_copies()
        for mine, sent, held in zip(
            self.params.blocks, last_sent.blocks, copies.blocks, strict=True
        ):
            step = torch.sparse.mm(gather, held).add_(self_weight * sent).sub_(sent)
            mine.add_(torch.where(online, step, 0.0), alpha=consensus_step)

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

    # ------------------------------------------------------------ nodes and a coordinator
    def upload(self, nodes: torch.Tensor) -> torch.Tensor:
        """The online nodes where ``nodes`` (N,) bool is set send their models to the
        coordinator. Returns (N,) bool: the models the coordinator received."""
        attempted = nodes.cpu() & self.online
        received = attempted.clone()
        if not self.ideal:
            ids = attempted.nonzero().squeeze(1)
            received[ids] = self._arrives(ids, torch.full_like(ids, self.num_nodes))
        self.ledger.record_upload(attempted, self.message_bytes, delivered=received)
        self._held |= received
        return received

    def request(self, nodes: torch.Tensor) -> torch.Tensor:
        """The coordinator asks these nodes for their models (a control message to each;
        offline nodes do not answer); they upload. Returns (N,) bool: the models the
        coordinator received."""
        asked = self._to_nodes(nodes.cpu(), HEADER_BYTES)  # the request: a header alone
        return self.upload(asked)

    def coordinator_mean(self, nodes: torch.Tensor | None = None) -> StackedTensors:
        """(1, P) the average of the models of ``nodes`` (N,) bool (None: all), which the
        coordinator must hold: it averages only what it received this round."""
        if nodes is None:
            nodes = torch.ones(self.num_nodes, dtype=torch.bool)
        nodes = nodes.cpu()
        if bool((nodes & ~self._held).any()):
            missing = (nodes & ~self._held).nonzero().squeeze(1).tolist()
            raise RuntimeError(f"the coordinator averages models it does not hold: {missing}")
        return self.shard.mean(self.params, None if bool(nodes.all()) else nodes)

    def download(self, nodes: torch.Tensor | None, model: StackedTensors) -> torch.Tensor:
        """The coordinator sends ``model`` (1, P) to ``nodes`` (N,) bool (None: all); those
        it reaches adopt it. Returns (N,) bool: the nodes that received it."""
        everyone = nodes is None
        nodes = torch.ones(self.num_nodes, dtype=torch.bool) if everyone else nodes.cpu()
        received = self._to_nodes(nodes, self.message_bytes)
        if everyone and bool(received.all()):
            self.params.fill_rows_(model)
        else:
            self.params.fill_rows_(model, self.shard.local(received).to(self.params.device))
        return received

    def _to_nodes(self, nodes: torch.Tensor, message_bytes: int) -> torch.Tensor:
        """Messages from the coordinator to ``nodes``: charged; returns those received."""
        received = nodes & self.online
        if not self.ideal:
            ids = received.nonzero().squeeze(1)
            received[ids] = self._arrives(torch.full_like(ids, self.num_nodes), ids)
        self.ledger.record_download(nodes, message_bytes, delivered=received)
        return received

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """What the conditions carry from round to round: the availability chain's state
        and, under loss, the models each node holds of its neighbours."""
        state: dict[str, Any] = {"availability": self.availability.state_dict()}
        if self._copies is not None:
            first, edges = self.edge_range[0], len(self._edges[0])
            state["copies"] = [
                NodeRows(block, first, edges, "edges") for block in self._copies.blocks
            ]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.availability.load_state_dict(state["availability"])
        if "copies" in state:
            for block, saved in zip(self._edge_copies().blocks, state["copies"], strict=True):
                block.copy_(saved)


def _edge_weights(topology: Topology, graph: RoundGraph) -> torch.Tensor:
    """(E,) float64: W's entry W_ij of each directed edge j -> i of ``graph``."""
    n = topology.num_nodes
    off = topology.rows != topology.cols
    keys = topology.rows[off] * n + topology.cols[off]
    order = np.argsort(keys)
    wanted = graph.receiver.numpy() * n + graph.sender.numpy()
    return torch.as_tensor(topology.weights[off][order][np.searchsorted(keys[order], wanted)])
