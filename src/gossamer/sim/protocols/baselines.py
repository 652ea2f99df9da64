"""The baseline protocols every frugal protocol is measured against."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import COORDINATOR, GOSSIP, ProtocolConfig
from gossamer.sim.protocols.base import Protocol, register_protocol


class DPSGDConfig(ProtocolConfig):
    name: Literal["dpsgd"] = "dpsgd"
    time_varying = True
    combines = GOSSIP


@register_protocol(DPSGDConfig)
class DPSGD(Protocol):
    """Decentralized parallel SGD (Lian et al., NeurIPS 2017, arXiv 1705.09056).

    Every round every node takes ``local_steps`` SGD steps, sends its model to each
    neighbour and replaces it by the W-weighted average of its own and its
    neighbours' models: ``x_i <- sum_j W_ij (x_j - lr g_j)``. This is the
    train-then-share-then-aggregate order of DecentralizePy and SkipTrain; Lian et
    al.'s Algorithm 1 instead adds the gradient after mixing (``sum_j W_ij x_j - lr g_i``).
    """

    def communicate(self, round: int) -> dict[str, float]:
        self.network.gossip()
        return {}


class PeriodicConfig(ProtocolConfig):
    name: Literal["periodic"] = "periodic"
    period: int = Field(10, ge=1, description="rounds between averagings (b)")
    uses_topology = False
    combines = COORDINATOR

    @property
    def cycle_rounds(self) -> int:
        """Rounds in one cycle: reports join evaluations right after an averaging."""
        return self.period


@register_protocol(PeriodicConfig)
class PeriodicAveraging(Protocol):
    """Periodic model averaging with a coordinator.

    Every round every node trains; after every ``period`` rounds (b) all nodes send
    their models to a coordinator, which sends the plain average back to all (Kamp et
    al., ECML-PKDD 2018, the periodic protocol sigma_b; FedAvg of McMahan et al., 2017,
    with full participation; local SGD). ``period: 1`` is continuous averaging. The
    average is unweighted (every node has the same batch size), as in Kamp et al.

    Under churn and loss (``network:``) the coordinator averages the models it
    received and sends the average to every node; nodes it does not reach keep their
    model until the next averaging (our choice: no catch-up message).
    """

    def communicate(self, round: int) -> dict[str, float]:
        if (round + 1) % self.config.period:
            return {"syncs": 0}
        received = self.network.upload(torch.ones(self.population.num_nodes, dtype=torch.bool))
        if not bool(received.any()):  # no model reached the coordinator: nothing to average
            return {"syncs": 0}
        self.network.download(None, self.network.coordinator_aggregate(received))
        return {"syncs": 1}


class NoSyncConfig(ProtocolConfig):
    name: Literal["nosync"] = "nosync"
    uses_topology = False
    sends_models = False


@register_protocol(NoSyncConfig)
class NoSync(Protocol):
    """Local training only: no node ever communicates (the lower baseline)."""
