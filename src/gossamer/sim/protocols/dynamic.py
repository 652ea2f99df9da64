"""Dynamic model averaging (Kamp et al., ECML-PKDD 2018), with and without a coordinator."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import COORDINATOR, ProtocolConfig
from gossamer.sim.protocols.base import Context, Protocol, register_protocol
from gossamer.sim.rng import Purpose, hash32

_STATS = ("violations", "balancing_steps", "requested", "partial_syncs", "full_syncs", "synced")


class DynamicConfig(ProtocolConfig):
    name: Literal["dynamic"] = "dynamic"
    delta: float = Field(1.0, ge=0, description="divergence threshold: a squared distance")
    period: int = Field(1, ge=1, description="rounds between local condition checks (b)")
    augmentation: Literal["double", "one"] = Field(
        "double", description="add 2|B| nodes per balancing step (published code) or one"
    )
    full_sync_fraction: float = Field(
        0.5, gt=0, le=1, description="balancing set size that triggers a full sync, as a share"
    )
    uses_topology = False
    combines = COORDINATOR

    @property
    def cycle_rounds(self) -> int:
        """Rounds between checks: reports join evaluations right after a check."""
        return self.period


@register_protocol(DynamicConfig)
class DynamicAveraging(Protocol):
    """Dynamic model averaging with a coordinator.

    Kamp, Adilova, Sicking, Hüger, Schlicht, Wirtz, Wrobel, "Efficient Decentralized
    Deep Learning by Dynamic Model Averaging", ECML-PKDD 2018 (arXiv 1807.03210),
    Algorithm 1, with the balancing of the published code (fraunhofer-iais/dlplatform,
    ``DynamicHedgeSync``).

    Every node trains every round. After every ``period`` rounds (b) each node checks
    its *local condition* ``||x_i - r||^2 <= delta`` against the reference model r
    (the average of the last full synchronization; initially the common start
    model). Violators upload their models to the coordinator, which *balances*: with
    B the nodes whose models it holds,

    1. if B is every node: full synchronization;
    2. if the average of B is within delta of r: it is sent to the nodes of B
       (partial synchronization; r unchanged);
    3. otherwise the coordinator would request k more nodes, chosen at random
       (k = 2|B| by default, as the published code, or 1); if B would then reach
       ``full_sync_fraction`` of all nodes (default half), it does a full
       synchronization instead: it requests every model it lacks, sends the average
       to all nodes, and the average becomes the new reference. Else it requests the
       k models and goes back to 2.

    Random choices: the candidates (nodes outside B) with the k smallest keys
    ``hash(seed, protocol, round, step, node)``. Messages: violation uploads, request
    messages (a header alone, 32 bytes), requested uploads, and every model sent back.

    **Choosing delta.** delta bounds a *squared* Euclidean distance summed over all P
    parameters. After b local SGD steps with learning rate lr and gradients of norm
    about G, a model has moved up to ``lr * b * G`` (coherent steps) or about
    ``lr * sqrt(b) * G`` (noisy ones), so a node's divergence grows roughly like
    ``lr^2 * b * G^2`` to ``lr^2 * b^2 * G^2``; at fixed per-parameter drift it grows
    linearly with P. So delta must scale with lr^2 and with the model size, and
    shrinks in relevance as training converges and gradients shrink (which is how
    the protocol saves communication). ``gossamer delta CONFIG`` measures the squared
    drift of the models over one period in a short calibration run and suggests a
    starting value (``gossamer.suggest_delta``).

    **Churn and loss** (``network:``): only online nodes check and upload; the
    coordinator's requests to offline nodes are counted and go unanswered; a full
    synchronization averages the models it received and becomes the reference; a node
    that missed it (offline, or the message was lost) is sent the current reference
    as soon as it is online again and adopts it (counted as a download).
    """

    def __init__(self, config: DynamicConfig, context: Context):
        super().__init__(config, context)
        self.reference = self.population.start.clone()  # (1, P): the common start model
        n = self.population.num_nodes
        self.stale = torch.zeros(n, dtype=torch.bool)  # (N,) missed the last full sync

    def communicate(self, round: int) -> dict[str, float]:
        stats = dict.fromkeys(_STATS, 0)
        online = self.network.online
        if bool((self.stale & online).any()):  # back online: the current reference
            self.stale &= ~self.network.download(self.stale & online, self.reference)
        if (round + 1) % self.config.period:
            return stats
        divergence = self.population.squared_distance(self.reference)  # (N,)
        violators = (divergence > self.config.delta) & online.to(divergence.device)
        stats["violations"] = int(violators.sum())
        if stats["violations"]:
            self._balance(self.network.upload(violators), round, stats)
        return stats

    def _balance(self, holding: torch.Tensor, round: int, stats: dict[str, float]) -> None:
        """Coordinator's resolution, starting from the models of ``holding`` (N,) bool."""
        network, n = self.network, self.population.num_nodes
        asked = torch.zeros(n, dtype=torch.bool)  # requested this round (answered or not)
        for step in range(n):  # at most log-many steps (doubling), n with "one"
            stats["balancing_steps"] = step + 1
            if bool(holding.all()):
                break
            if not bool(holding.any()):  # every request unanswered: nothing to balance
                return
            average = network.coordinator_aggregate(holding)
            if float(average.squared_distance(self.reference)[0]) <= self.config.delta:
                received = network.download(holding, average)
                stats["partial_syncs"], stats["synced"] = 1, int(received.sum())
                return
            size = int(holding.sum())
            candidates = ~holding & ~asked  # an unanswered node is not asked again
            more = 2 * size if self.config.augmentation == "double" else 1
            wanted = min(more, int(candidates.sum()))
            if wanted == 0 or size + wanted >= self.config.full_sync_fraction * n:
                break
            chosen = self._choose(candidates, wanted, round, step)
            asked |= chosen
            holding = holding | self._request(chosen, stats)
        held = holding | self._request(~holding & ~asked, stats)  # full synchronization
        if not bool(held.any()):
            return
        self.reference = network.coordinator_aggregate(held).clone()
        received = network.download(None, self.reference)
        self.stale = ~received
        stats["full_syncs"], stats["synced"] = 1, int(received.sum())

    def _choose(self, candidates: torch.Tensor, k: int, round: int, step: int) -> torch.Tensor:
        """The k candidates (N,) bool with the smallest keys hash(seed, round, step, node)."""
        nodes = torch.arange(len(candidates))
        keys = hash32(self.context.seed, Purpose.PROTOCOL, round, step, nodes)
        keys = torch.where(candidates, keys, 2**33)
        chosen = torch.zeros_like(candidates)
        chosen[torch.argsort(keys, stable=True)[:k]] = True
        return chosen

    def _request(self, nodes: torch.Tensor, stats: dict[str, float]) -> torch.Tensor:
        """The coordinator asks these nodes (N,) bool for their models; returns those received."""
        stats["requested"] += int(nodes.sum())
        return self.network.request(nodes)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"reference": self.reference.matrix(), "stale": self.stale.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.reference.copy_from_matrix(state["reference"])
        self.stale.copy_(state["stale"])


class DynamicGossipConfig(ProtocolConfig):
    name: Literal["dynamic_gossip"] = "dynamic_gossip"
    public_models = True
    delta: float = Field(1.0, ge=0, description="send threshold: a squared distance")
    period: int = Field(1, ge=1, description="rounds between checks and gossip steps")
    consensus_step: float = Field(1.0, gt=0, le=1, description="gamma of the mixing step")

    @property
    def cycle_rounds(self) -> int:
        """Rounds between checks: reports join evaluations right after a check."""
        return self.period


@register_protocol(DynamicGossipConfig)
class DynamicGossip(Protocol):
    """Dynamic averaging without a coordinator: event-triggered gossip.

    Our extension of Kamp et al.'s idea to a gossip topology. Each node keeps s_i,
    the model it last sent (initially the common start model, which every node
    knows). Every ``period`` rounds, after training:

    1. node i sends its model to its neighbours if it moved more than delta since it
       last sent: ``||x_i - s_i||^2 > delta``; then s_i <- x_i;
    2. every node mixes with the most recent models it holds:
       ``x_i <- x_i + gamma * sum_j W_ij (s_j - s_i)``.

    Step 2 is the consensus step of CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019)
    and SPARQ-SGD (Singh, Data, George, Diggavi, 2019, arXiv 1910.14280), whose
    event-triggered communication this protocol shares: a node sends only when its
    model has changed enough. With ``compression`` a sender sends the compressed
    change ``C(x_i - s_i)`` and s_i (and its neighbours' copies) add it, as SPARQ-SGD
    does; the trigger stays a fixed squared distance, not SPARQ-SGD's decaying
    threshold. s_i and the copies are the network's public models
    (``gossamer.sim.network.public``). Because every node uses the same s_j, a
    doubly stochastic W preserves the network mean (stale copies do not bias it).
    With delta 0, period 1, gamma 1 and no compression every node that moved sends,
    s = x, and the step is x <- W x: exactly D-PSGD.

    **Churn and loss** (``network:``): only online nodes check, send and mix; each
    node mixes with the last model it *received* from each neighbour, so a lost
    message, or a send while the receiver was offline, leaves that copy stale (and
    the network mean is then no longer preserved exactly).
    """

    def __init__(self, config: DynamicGossipConfig, context: Context):
        super().__init__(config, context)
        # s_i: the common start model, which every node knows (by value: no rank's row)
        self.network.start_public(self.population.start)

    def communicate(self, round: int) -> dict[str, float]:
        if (round + 1) % self.config.period:
            return {"senders": 0}
        moved = self.population.squared_distance(self.network.public) > self.config.delta  # (N,)
        senders = moved & self.network.online.to(moved.device)
        self.network.publish(senders)
        self.network.consensus(self.config.consensus_step)
        return {"senders": int(senders.sum())}
