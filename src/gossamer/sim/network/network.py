"""The network: every message between nodes, or between nodes and a coordinator, passes here.

Protocols never touch the ledger or the mixing matrix. They call primitives that move
messages *and* charge the ledger in one step, so what is counted is exactly what moved:

- :meth:`Network.gossip`: every online node sends its model to each neighbour and
  replaces it by the W-weighted average of its own and what it received
  (``X <- W X``; with compression ``x_i <- W_ii x_i + sum_j W_ij C(x_j)``);
- :meth:`~PublicModels.publish` and :meth:`~PublicModels.consensus`: nodes send their
  model, or a compressed change of their *public model*, to their neighbours, and
  every node mixes with the public models it holds (event-triggered gossip,
  CHOCO-SGD; ``gossamer.sim.network.public``);
- :meth:`~PushSum.push`: push-sum on directed and time-varying graphs
  (``gossamer.sim.network.pushsum``);
- :meth:`~CoordinatorLink.upload`, :meth:`~CoordinatorLink.request`,
  :meth:`~CoordinatorLink.coordinator_aggregate`, :meth:`~CoordinatorLink.download`: nodes
  and a coordinator (``gossamer.sim.network.coordinator``).

**What is sent** (``protocol.compression``, ``gossamer.sim.network.compression``): every
model message the protocol sends goes through the network's :class:`Encoder`: a
:class:`~gossamer.sim.network.message.Message` carries what receivers decode and its
exact size, which the ledger, the simulated clock and the link energy are charged
with. Downloads from the coordinator are whole models.

**How what was received is combined** (``protocol.aggregator``,
``gossamer.sim.network.aggregation``): the default, ``mean``, is W's mixing above and
the coordinator's mean. Any other aggregator is given, for each receiving node, its own
model and the messages it used (decoded), and returns its new model: the messages
moved and charged are the same whichever combines them.

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
- with public models each node keeps what it last received of each neighbour's: a
  lost message leaves that copy stale (per-edge copies, allocated only under
  conditions).

With the defaults (everyone online, every message delivered) the ideal-network code
path runs, and results are bit for bit those of a network without conditions.

**Sharded over ranks** (``gossamer.sim.shard``), ``params`` holds this rank's nodes and
everything else here is replicated: masks, draws and the ledger are computed over all
N nodes on every rank from the same inputs, and only model rows move between ranks
(the mixer's halo, the coordinator's float64 sums).

Message sizes (``gossamer.sim.accounting``): a model message carries the parameters
plus a 32-byte header; a request is the header alone; a compressed message its
encoding plus the header (docs/compression.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gossamer.config import NetworkConfig
from gossamer.sim.accounting import Ledger
from gossamer.sim.conditions import Availability, delivered
from gossamer.sim.network.aggregation import Aggregator, build_aggregator
from gossamer.sim.network.aggregation.mean import MeanConfig
from gossamer.sim.network.compression import Encoder
from gossamer.sim.network.coordinator import CoordinatorLink
from gossamer.sim.network.message import Message, SparseRows
from gossamer.sim.network.public import PublicModels
from gossamer.sim.network.pushsum import PushSum
from gossamer.sim.shard import Shard
from gossamer.sim.stacked import StackedTensors
from gossamer.sim.timevarying import RoundGraph, TimeVarying, round_spectral_gap, undirected
from gossamer.sim.topology import Mixer, Topology, edge_weights

#: Bytes of the stacks a non-linear aggregator combines at once (receivers in chunks).
STACK_BUDGET = 256 << 20


class Network(PublicModels, CoordinatorLink, PushSum):
    """Moves messages between nodes and a coordinator, and charges every one."""

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
        encoder: Encoder | None = None,
        aggregator: Aggregator | None = None,
    ):
        self.params = params  # (n, P) the population's (this rank's) models, changed in place
        self.ledger = ledger
        self.message_bytes = message_bytes  # one whole-model message, header included
        self.topology = topology  # None for protocols that talk only to a coordinator
        self.mixer = mixer
        self.shard = shard or Shard.single(params.num_nodes)
        self.encoder = encoder  # what model messages carry; None: whole models
        # how received models are combined; the default: W's mean (the mixer's fast path)
        self.aggregator = aggregator or build_aggregator(MeanConfig())
        n = self.shard.num_nodes
        self.num_nodes, self.seed = n, seed
        conditions = conditions or NetworkConfig()
        self.ideal = conditions.ideal  # everyone online, every message delivered
        self.delivery = conditions.delivery
        self.availability = availability or Availability(conditions.availability, n, seed)
        self.online = torch.ones(n, dtype=torch.bool)  # (N,) who takes part this round
        self.round, self._exchange = 0, 0  # the round, and its count of exchanges so far
        self._encoded = 0  # messages encoded this round (keys compression's draws)
        self._start = params.rows(0, 1).clone()  # (1, P) the common start model
        self.weight_kind = weights  # recomputed on the live subgraph under conditions
        self.schedule = schedule  # the graph of each round, for time-varying topologies
        # (N,) nodes too slow to train within the round's deadline (network.deadline)
        self.stragglers = stragglers
        # (N + 1,) reliability of each node's link (network.link_delivery); the last
        # entry is the coordinator's (1). None: every link as reliable as the network
        self.links = links
        self.round_stats: dict[str, float] = {}  # this round's network statistics
        self._init_public()
        self._init_coordinator()
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
        self.round, self._exchange, self._encoded = round, 0, 0
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

    @property
    def compressed(self) -> bool:
        """Whether model messages are compressed (``protocol.compression`` not none)."""
        return self.encoder is not None and not self.encoder.exact

    @property
    def ef21(self) -> bool:
        """Whether model messages are compressed changes of estimates (EF21)."""
        return self.compressed and self.encoder.ef21

    @property
    def model_message_bytes(self) -> int:
        """One model message as the protocol sends it (compressed, or whole)."""
        return self.encoder.bytes if self.encoder is not None else self.message_bytes

    def _arrives(self, senders: torch.Tensor, receivers: torch.Tensor) -> torch.Tensor:
        """(M,) bool: which of these messages (sender -> receiver, the coordinator being
        node N) arrive; each call is a new exchange of the round, with its own draws."""
        self._exchange += 1
        return delivered(
            self.seed, self.round, self._exchange, senders, receivers, self.delivery, self.links
        )

    def encode(
        self, values: StackedTensors, rows: torch.Tensor | None = None, kind: str = "model"
    ) -> Message:
        """The message of this rank's nodes at local ``rows`` (None: all), sending
        ``values`` (one row each), through the protocol's compression."""
        self._encoded += 1
        if self.encoder is None:
            return Message(values, self.message_bytes, kind)
        return self.encoder.encode(values, (self.round, self._encoded), rows, kind)

    # ------------------------------------------------------------ node to node
    def gossip(self) -> torch.Tensor:
        """Every online node sends its model to each neighbour; every node mixes with what
        arrived both ways: ``X <- W X`` on the live subgraph (with compression, its own
        model exactly and its neighbours' as decoded: ``x_i <- W_ii x_i + sum_j W_ij
        C(x_j)``, naive compressed D-PSGD).

        Returns (N,) the model messages each node received.
        """
        if self.ef21:  # the neighbours' estimates h_j, moved by compressed changes
            received = self.publish(self.online)
            self._mix_estimates()
            return received
        message = self._gossip_message()
        linear = self.aggregator.linear
        if self.ideal and self.schedule is None:
            self.ledger.record_exchange(self.degree, self.degree, message.bytes)
            if linear:
                self._combine(message, self._self_weight)
            else:
                self._aggregate_received(self._static, None, message)
            return self.degree.clone()
        graph = self.schedule.at(self.round) if self.schedule is not None else self._static
        arrived = self._send(self.online[graph.sender], message.bytes, graph)  # (E,)
        used = arrived  # directed: what arrived; undirected: edges where both arrived
        if graph.reverse is not None:
            used = arrived & arrived[graph.reverse]
        if not linear:
            self._aggregate_received(graph, used, message)
        elif graph.reverse is not None:
            self._mix_live(graph, used, message)
        else:  # directed: each node averages itself and what arrived, equally
            self._average_arrived(graph, used, message)
        return torch.bincount(graph.receiver[arrived], minlength=self.num_nodes)

    def _gossip_message(self) -> Message:
        """Every online node's model as sent; compressed, the offline nodes' rows hold
        their own models (they send nothing, and W leaves them as they are)."""
        if not self.compressed or self.ideal:
            return self.encode(self.params)
        online = self.shard.local(self.online).to(self.params.device)
        rows = online.nonzero().squeeze(1)
        message = self.encode(self.params.index_select(rows), rows)
        if message.sparse is not None:  # the offline rows: nothing (no edge reads them)
            sparse = message.sparse
            m, k = self.params.num_nodes, sparse.index.shape[1]
            index = torch.zeros(m, k, dtype=sparse.index.dtype, device=sparse.index.device)
            values = torch.zeros(m, k, dtype=sparse.values.dtype, device=sparse.values.device)
            index[rows], values[rows] = sparse.index, sparse.values
            whole = SparseRows(index, values, sparse.shapes)
            return Message(None, message.bytes, message.kind, exact=False, sparse=whole)
        values = self.params.clone()
        values.index_copy_(rows, message.values)
        return Message(values, message.bytes, message.kind, exact=False)

    def _send(
        self, attempted: torch.Tensor, message_bytes: int, graph: RoundGraph | None = None
    ) -> torch.Tensor:
        """Messages along the directed edges (of ``graph``, by default the static one)
        where ``attempted`` (E,) is set: charge them; returns (E,) which arrived."""
        graph = graph or self._static
        receiver, sender = graph.receiver, graph.sender
        arrived = attempted & self.online[receiver] & self._arrives(sender, receiver)
        n = self.num_nodes
        self.ledger.record_exchange(
            torch.bincount(sender[attempted], minlength=n),
            torch.bincount(receiver[arrived], minlength=n),
            message_bytes,
            delivered=torch.bincount(sender[arrived], minlength=n),
        )
        return arrived

    def _mix_live(self, graph: RoundGraph, live: torch.Tensor, message: Message) -> None:
        """X <- W X with the configured weights on the subgraph of ``live`` (E,) edges."""
        rows, cols = graph.receiver[live].numpy(), graph.sender[live].numpy()
        degree = np.bincount(rows, minlength=self.num_nodes)
        off, diagonal = edge_weights(self.weight_kind, degree, rows, cols)
        self._mix(graph, rows, cols, off, diagonal, message)

    def _average_arrived(self, graph: RoundGraph, arrived: torch.Tensor, message: Message) -> None:
        """x_i <- (x_i + sum of the models that arrived) / (1 + their count)."""
        rows, cols = graph.receiver[arrived].numpy(), graph.sender[arrived].numpy()
        share = 1.0 / (1.0 + np.bincount(rows, minlength=self.num_nodes))  # (N,)
        self._mix(graph, rows, cols, share[rows], share, message)

    def _mix(self, graph, rows, cols, off, diagonal, message: Message) -> None:
        """Apply the round's W (off-diagonal entries W[rows, cols] = off, then the
        diagonal); on a time-varying graph, record its spectral gap when it changed."""
        nodes = np.arange(self.num_nodes)
        rows, cols = np.concatenate([rows, nodes]), np.concatenate([cols, nodes])
        weights = np.concatenate([off, diagonal])
        self.mixer.set_weights(rows, cols, weights, self.num_nodes)
        self._combine(message, torch.as_tensor(diagonal))
        if self.schedule is not None and graph.changed:
            self.round_stats["spectral_gap"] = round_spectral_gap(
                rows, cols, weights, self.num_nodes, symmetric=graph.reverse is not None
            )

    def _combine(self, message: Message, self_weight: torch.Tensor) -> None:
        """Every node's model <- the mixer's W applied to what it received, its own
        model taken exactly: ``X <- W X`` when messages are the models themselves, else
        ``X <- W X~ + diag(W) (X - X~)`` with X~ the decoded messages (consumed)."""
        if message.exact:
            self.mixer.apply_(self.params.blocks)
            return
        device = self.params.device
        diagonal = self.shard.local(self_weight).to(device=device, dtype=torch.float32)[:, None]
        # A sparse message is made dense here: added along the edges entry by entry, its
        # k entries a row x 6 neighbours cost more than the mixer's pass over X
        # (measured: 0.67 s against 0.13 s, N = 1,000, k = 1,590, 6-regular).
        for mine, received in zip(self.params.blocks, message.values.blocks, strict=True):
            mine.sub_(received).mul_(diagonal)  # W_ii (x_i - x~_i)
            self.mixer.apply_([received])  # W X~, in place
            mine.add_(received)

    def _aggregate_received(
        self, graph: RoundGraph, used: torch.Tensor | None, message: Message
    ) -> None:
        """Every node of this rank <- the aggregator over its own model (slot 0) and the
        messages of the senders of its ``used`` (E,) edges (None: all), in the order of
        the senders' ids. Receivers go in chunks whose stacks take at most
        :data:`STACK_BUDGET` bytes (the same result for any chunking: each row is
        combined alone); under ranks every rank gathers every sender's message."""
        receiver, sender = graph.receiver, graph.sender
        if used is not None:
            receiver, sender = receiver[used], sender[used]
        lo, n = self.shard.lo, self.params.num_nodes
        mine = (receiver >= lo) & (receiver < lo + n)
        receiver, sender = receiver[mine] - lo, sender[mine]
        order = torch.argsort(receiver * self.num_nodes + sender)
        receiver, sender = receiver[order], sender[order]
        count = torch.bincount(receiver, minlength=n) + 1  # (n,) itself and its senders
        slots = int(count.max())
        first = torch.cumsum(count - 1, 0) - (count - 1)  # each receiver's first edge
        table = torch.zeros(n, slots, dtype=torch.int64)  # padding reads node 0, unused
        table[receiver, torch.arange(len(receiver)) - first[receiver] + 1] = sender
        device = self.params.device
        table, count = table.to(device), count.to(device)
        sent = [self.shard.gather(block) for block in message.values.blocks]  # (N, P_l)
        combined = StackedTensors.zeros(self.params.shapes, n, device)  # then copied in
        p = self.params.num_params
        per_row = slots * p * 4 + self.aggregator.stack_bytes(1, slots, p)
        step = max(1, STACK_BUDGET // per_row)
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            own = [block[rows] for block in self.params.blocks]
            stack = []  # slot-major (D, m, P_l) stacks, handed over as (m, D, P_l) views
            for block, theirs in zip(own, sent, strict=True):
                slot_major = torch.empty(slots, len(block), block.shape[1], device=device)
                slot_major[0] = block
                torch.index_select(
                    theirs,
                    0,
                    table[rows, 1:].T.reshape(-1),
                    out=slot_major[1:].view(-1, block.shape[1]),
                )
                stack.append(slot_major.transpose(0, 1))
            out = self.aggregator.aggregate(stack, count[rows], own)
            for target, block in zip(combined.blocks, out, strict=True):
                target[rows] = block
        for block, new in zip(self.params.blocks, combined.blocks, strict=True):
            block.copy_(new)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """What the network carries from round to round: the availability chain's state,
        the public models and the copies nodes hold of them, what each node last
        received from the coordinator, and the compressor's state."""
        state: dict[str, Any] = {"availability": self.availability.state_dict()}
        state.update(self._public_state())
        state.update(self._coordinator_state())
        if self.encoder is not None and not self.encoder.exact:
            state["compression"] = self.encoder.state_dict(self.num_nodes)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.availability.load_state_dict(state["availability"])
        self._load_public_state(state)
        self._load_coordinator_state(state)
        if "compression" in state:
            self.encoder.load_state_dict(state["compression"])


def _edge_weights(topology: Topology, graph: RoundGraph) -> torch.Tensor:
    """(E,) float64: W's entry W_ij of each directed edge j -> i of ``graph``."""
    n = topology.num_nodes
    off = topology.rows != topology.cols
    keys = topology.rows[off] * n + topology.cols[off]
    order = np.argsort(keys)
    wanted = graph.receiver.numpy() * n + graph.sender.numpy()
    return torch.as_tensor(topology.weights[off][order][np.searchsorted(keys[order], wanted)])
