"""The protocol interface: one class per protocol, one method per decision.

A protocol decides, each round, *who trains* and *who communicates what with whom*,
applies it through the engine, and reports every message to the ledger. The runner
calls :meth:`Protocol.step` once per round and never looks at protocol names.

To add a protocol, write one file::

    @register_protocol_config
    class MyConfig(ProtocolConfig):
        name: Literal["mine"] = "mine"
        period: int = Field(5, ge=1)

    @register_protocol(MyConfig)
    class Mine(Protocol):
        def train_mask(self, round):          # optional: (N,) bool, None = everyone
            ...
        def communicate(self, round):         # optional: exchange models, record messages
            if (round + 1) % self.config.period == 0:
                self.gossip()
            return {"my_stat": 1.0}           # per-round stats, written to rounds.csv

and import it (built-ins are imported by ``gossamer.protocols``). State that must
survive a checkpoint lives in tensors returned by :meth:`state_dict`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch

from gossamer.accounting import Ledger
from gossamer.config import ProtocolConfig, register_protocol_config
from gossamer.energy import EnergyModel
from gossamer.engine import Population, TrainStats
from gossamer.topology import Mixer, Topology


@dataclass
class Context:
    """What a protocol acts on."""

    population: Population
    ledger: Ledger
    topology: Topology | None  # None when the protocol's config says uses_topology = False
    mixer: Mixer | None
    local_steps: int
    rounds: int  # rounds in the run
    message_bytes: int  # one model message, header included
    seed: int
    energy: EnergyModel | None = None  # device costs and budgets (energy.enabled)


class Protocol:
    """Base class: every node trains every round; no communication.

    Override :meth:`train_mask` and :meth:`communicate`; :meth:`step` is the round.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ProtocolConfig]]

    def __init__(self, config: ProtocolConfig, context: Context):
        self.config = config
        self.context = context
        self.population = context.population
        self.ledger = context.ledger

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
        steps = self.context.local_steps
        train = self.population.train(steps, mask)
        trained = torch.full((self.population.num_nodes,), steps) if mask is None else mask * steps
        self.ledger.record_training(trained, self.population.batch_size)
        return train, self.communicate(round)

    # ------------------------------------------------------------ helpers
    def gossip(self) -> None:
        """Every node sends its model to each neighbour and mixes: X <- W X."""
        degree = torch.as_tensor(self.context.topology.degree)
        self.ledger.record_exchange(degree, degree, self.context.message_bytes)
        self.population.mix(self.context.mixer)

    def average_through_coordinator(self) -> None:
        """Every node uploads its model; the coordinator sends the average back to all."""
        everyone = torch.ones(self.population.num_nodes, dtype=torch.int64)
        self.ledger.record_upload(everyone, self.context.message_bytes)
        self.population.average_all()
        self.ledger.record_download(everyone, self.context.message_bytes)

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Protocol state to checkpoint (tensors only)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""


_PROTOCOLS: dict[str, type[Protocol]] = {}
P = TypeVar("P", bound=type[Protocol])


def register_protocol(config_class: type[ProtocolConfig]) -> Callable[[P], P]:
    """Class decorator: register a protocol under its config's ``name``."""
    register_protocol_config(config_class)

    def decorate(cls: P) -> P:
        cls.config_class = config_class
        cls.name = config_class.model_fields["name"].default
        _PROTOCOLS[cls.name] = cls
        return cls

    return decorate


def build_protocol(config: ProtocolConfig, context: Context) -> Protocol:
    """Instantiate the registered protocol for a validated config section."""
    return _PROTOCOLS[config.name](config, context)
