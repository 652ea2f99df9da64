"""Stochastic Gradient Push: D-PSGD's local steps with push-sum gossip (Assran et al. 2019)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import ProtocolConfig
from gossamer.sim.protocols.base import Context, Protocol, register_protocol


class PushSumConfig(ProtocolConfig):
    name: Literal["pushsum"] = "pushsum"
    time_varying = True
    compressible = False
    acknowledgements: bool = Field(
        False, description="senders keep undelivered shares (one ack per delivered share)"
    )


@register_protocol(PushSumConfig)
class StochasticGradientPush(Protocol):
    """Stochastic Gradient Push (Assran, Loizou, Ballas, Rabbat, ICML 2019, Algorithm 1)
    with push-sum gossip (Kempe, Dobra, Gehrke, FOCS 2003;
    ``gossamer.sim.network.pushsum``).

    Every round every node takes ``local_steps`` SGD steps on its de-biased model
    z_i = x_i / w_i, then pushes shares of (x_i, w_i) to its out-neighbours of the
    round (every neighbour on a fixed graph; one peer on ``one_peer_exponential``) and
    de-biases what it summed. The paper's Algorithm 1 writes the step on the numerator,
    ``x_i <- x_i - lr grad f(z_i)``, which is a step of lr / w_i on z_i; we take it on
    z_i with the configured lr, as the authors' code does (gossip_module/distributed.py
    steps the de-biased parameters); the two agree whenever w_i = 1, as on regular
    graphs with uniform shares and no loss. Push-sum weights start at 1 and are part of
    the run's state. Messages carry the model and the weight (8 bytes more).
    """

    def __init__(self, config: PushSumConfig, context: Context):
        super().__init__(config, context)
        self.weight = torch.ones(self.population.num_nodes, dtype=torch.float64)  # (N,) w

    def communicate(self, round: int) -> dict[str, float]:
        self.weight = self.network.push(self.weight, self.config.acknowledgements)
        return {"weight_min": float(self.weight.min()), "weight_max": float(self.weight.max())}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weight": self.weight.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.weight = state["weight"].cpu().double().clone()
