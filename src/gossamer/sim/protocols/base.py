"""The protocol interface: one class per protocol, one method per decision.

A protocol decides, each round, *who trains* and *who sends what to whom*. It trains
through the population and communicates through the network's primitives
(``gossamer.sim.network``), which move models and charge the ledger in one step; it
never touches the ledger or the mixing matrix itself. The simulation calls
:meth:`Protocol.step` once per round and never looks at protocol names.

To add a protocol, write one file::

    class MyConfig(ProtocolConfig):
        name: Literal["mine"] = "mine"
        period: int = Field(5, ge=1)

    @register_protocol(MyConfig)
    class Mine(Protocol):
        def train_mask(self, round):          # optional: (N,) bool, None = everyone
            ...
        def communicate(self, round):         # optional: exchange models
            if (round + 1) % self.config.period == 0:
                self.network.gossip()
            return {"my_stat": 1.0}           # per-round stats, written to rounds.csv

and import it (built-ins are imported with gossamer), or name the file in the config
without registering: ``protocol: {name: custom, import_path: "mine.py:Mine", period:
5}`` (the class then says ``config_class = MyConfig``). State that must survive a
checkpoint lives in tensors returned by :meth:`state_dict`.

**Sharded runs** (``gossamer run --ranks R``, torchrun): each rank holds a block of
the nodes, and the population's and the network's methods are collectives that every
rank must enter, in the same order. The rule: *no branching on rank-local data before
a collective*. Every ``if``, loop bound or early ``return`` that decides whether (or
how often) the population or the network is called depends only on what every rank
holds alike: the round, the config, keyed draws, and the (N,) vectors they return
(masks, losses, divergences, what was received), indexed by global node id. Never on
this rank's rows (``population.params``, its ``local_nodes``, a row number: the first
row of rank 1 is not node 0; the start model is ``population.start``). Ranks that
branch apart wait in different collectives until ``GOSSAMER_DIST_TIMEOUT`` (300 s).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch

from gossamer.config import PROTOCOLS, ProtocolConfig
from gossamer.sim.energy import EnergyModel
from gossamer.sim.engine import Population, TrainStats
from gossamer.sim.network import Network
from gossamer.sim.topology import Topology


@dataclass
class Context:
    """What a protocol acts on."""

    population: Population
    network: Network
    topology: Topology | None  # None when the protocol's config says uses_topology = False
    local_steps: int
    rounds: int  # rounds in the run
    seed: int
    energy: EnergyModel | None = None  # device costs and budgets (energy.enabled)


class Protocol:
    """Base class: every node trains every round; no communication.

    Override :meth:`train_mask` and :meth:`communicate`; :meth:`step` is the round.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ProtocolConfig]] = ProtocolConfig

    def __init__(self, config: ProtocolConfig, context: Context):
        self.config = config
        self.context = context
        self.population = context.population
        self.network = context.network

    # ------------------------------------------------------------ hooks
    def train_mask(self, round: int) -> torch.Tensor | None:
        """(N,) bool: which nodes train in this (0-based) round; None means all."""
        return None

    def communicate(self, round: int) -> dict[str, float]:
        """Exchange models after training; returns per-round statistics."""
        return {}

    # ------------------------------------------------------------ the round
    def step(self, round: int) -> tuple[TrainStats, dict[str, float]]:
        """One round: train the masked nodes, then communicate.

        Returns the nodes' training statistics and the protocol's round statistics.
        """
        mask = self.train_mask(round)
        if not self.network.everyone_trains:  # offline nodes and stragglers do not train
            trainers = self.network.trainers.to(self.population.device)
            mask = trainers if mask is None else mask & trainers
        train = self.population.train(self.context.local_steps, mask, round=round)
        return train, self.communicate(round)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Protocol state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (tensors on the population's device)."""


PROTOCOLS.base = Protocol  # what a protocol named by import_path must subclass
P = TypeVar("P", bound=type[Protocol])


def register_protocol(config_class: type[ProtocolConfig]) -> Callable[[P], P]:
    """Class decorator: register a protocol under its config's ``name``."""
    return PROTOCOLS.class_decorator(config_class)


def build_protocol(config: ProtocolConfig, context: Context) -> Protocol:
    """Instantiate the protocol a validated config section selects (registered, or
    imported from ``import_path`` for ``name: custom``)."""
    return PROTOCOLS.resolve(config)(config, context)
