"""SkipTrain (Dhasade et al. 2024): gossip learning that skips training in some rounds.

Dhasade, Dini, Guerra, Kermarrec, Miozzo, Pires, Sharma, de Vos, "Energy-Aware
Decentralized Learning with Intermittent Model Training", arXiv 2407.01283; public
code github sacs-epfl/SkipTrain (``src/skiptrain/node/SkipTrainNode.py``), followed
here. Every round every node shares its model with its neighbours and aggregates
with Metropolis–Hastings weights (D-PSGD's communication); only *training* rounds
also train first. Synchronization rounds spend no training energy and improve
consensus between the models.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import GOSSIP, ConfigError, ProtocolConfig
from gossamer.sim.protocols.base import Context, Protocol, register_protocol
from gossamer.sim.rng import Purpose, uniform


def is_training_round(round: int, train_rounds: int, sync_rounds: int) -> bool:
    """Round t (0-based) trains iff ``t mod (train_rounds + sync_rounds) < train_rounds``."""
    return round % (train_rounds + sync_rounds) < train_rounds


class SkipTrainConfig(ProtocolConfig):
    name: Literal["skiptrain"] = "skiptrain"
    time_varying = True
    combines = GOSSIP
    train_rounds: int = Field(1, ge=1, description="consecutive training rounds")
    sync_rounds: int = Field(1, ge=0, description="consecutive synchronization rounds")

    @property
    def cycle_rounds(self) -> int:
        """Rounds in one train/sync cycle (reports join evaluations at cycle ends)."""
        return self.train_rounds + self.sync_rounds if self.sync_rounds else 1


@register_protocol(SkipTrainConfig)
class SkipTrain(Protocol):
    """SkipTrain: train in ``train_rounds`` of every ``train_rounds + sync_rounds``
    rounds, share and aggregate every round. ``sync_rounds: 0`` is D-PSGD."""

    def train_mask(self, round: int) -> torch.Tensor | None:
        if is_training_round(round, self.config.train_rounds, self.config.sync_rounds):
            return None
        return torch.zeros(
            self.population.num_nodes, dtype=torch.bool, device=self.population.device
        )

    def communicate(self, round: int) -> dict[str, float]:
        self.network.gossip()
        training = is_training_round(round, self.config.train_rounds, self.config.sync_rounds)
        return {"trained_nodes": int(self.network.trainers.sum()) if training else 0}


class BudgetedProtocol(Protocol):
    """A gossip protocol whose nodes train only while their energy budget lasts.

    Each node's budget is ``floor(battery x energy.battery_fraction / energy of a
    training round)`` training rounds (``gossamer.sim.energy``); state: what remains.
    """

    def __init__(self, config: ProtocolConfig, context: Context):
        super().__init__(config, context)
        if context.energy is None:  # its config section should say needs_energy = True
            raise ConfigError(
                f"protocol.name: {config.name!r} needs energy budgets; set energy.enabled: true"
            )
        budget = torch.as_tensor(context.energy.budget_rounds, device=self.population.device)
        self.remaining = budget.clone()  # (N,) int64 training rounds left

    def _spend(self, mask: torch.Tensor) -> torch.Tensor:
        """Train the masked nodes that are online; they spend a round of their budget."""
        mask = mask & self.network.trainers.to(mask.device)  # offline, straggling: no training
        self._last_trained = int(mask.sum())
        self.remaining -= mask.long()
        return mask

    def communicate(self, round: int) -> dict[str, float]:
        self.network.gossip()
        return {
            "trained_nodes": int(self._last_trained),
            "exhausted_nodes": int((self.remaining <= 0).sum()),
        }

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"remaining": self.remaining.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.remaining.copy_(state["remaining"])


class SkipTrainConstrainedConfig(SkipTrainConfig):
    """SkipTrain's schedule; in its training rounds a node trains only with some
    probability while its budget lasts."""

    name: Literal["skiptrain_constrained"] = "skiptrain_constrained"
    needs_energy = True


@register_protocol(SkipTrainConstrainedConfig)
class SkipTrainConstrained(BudgetedProtocol):
    """SkipTrain-constrained: spread each node's energy budget over the run.

    With ``max_training_rounds = train_rounds / (train_rounds + sync_rounds) x
    rounds`` training slots in the run, node i trains in a training slot with
    probability ``p_i = min(budget_i / max_training_rounds, 1)`` (fixed at the start,
    as the published code) while it has budget left; the draw for node i in round t
    is ``uniform(seed, protocol, t, i) < p_i``.
    """

    def __init__(self, config: SkipTrainConstrainedConfig, context: Context):
        super().__init__(config, context)
        slots = config.train_rounds / (config.train_rounds + config.sync_rounds) * context.rounds
        self.probability = (self.remaining.double() / slots).clamp(max=1.0)  # (N,)
        self._last_trained = 0

    def train_mask(self, round: int) -> torch.Tensor:
        n = self.population.num_nodes
        mask = torch.zeros(n, dtype=torch.bool, device=self.population.device)
        if is_training_round(round, self.config.train_rounds, self.config.sync_rounds):
            nodes = torch.arange(n, device=self.population.device)
            draw = uniform(self.context.seed, Purpose.PROTOCOL, round, nodes)
            mask = (self.remaining > 0) & (draw < self.probability)
        return self._spend(mask)


class GreedyConfig(ProtocolConfig):
    name: Literal["greedy"] = "greedy"
    time_varying = True
    combines = GOSSIP
    needs_energy = True


@register_protocol(GreedyConfig)
class Greedy(BudgetedProtocol):
    """Greedy (SkipTrain's baseline): train every round until the budget is spent,
    then only share and aggregate."""

    def train_mask(self, round: int) -> torch.Tensor:
        return self._spend(self.remaining > 0)
