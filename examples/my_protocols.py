"""A protocol of your own, in a file of your own: gossip only every `skip` rounds.

Use it without installing anything (see examples/custom_protocol.yaml):

    gossamer run examples/custom_protocol.yaml
    gossamer run --set protocol.name=custom \
        --set protocol.import_path=examples/my_protocols.py:EveryOther --set protocol.skip=3

The config section class says which keys the protocol takes; the class says what
happens each round, through the network (which moves and counts every message).
"""

from typing import Literal

import torch
from pydantic import Field

from gossamer import Protocol, ProtocolConfig


class EveryOtherConfig(ProtocolConfig):
    name: Literal["every_other"] = "every_other"
    skip: int = Field(2, ge=1, description="gossip every `skip` rounds")


class EveryOther(Protocol):
    """D-PSGD that gossips only every `skip` rounds (local SGD between gossip rounds)."""

    config_class = EveryOtherConfig

    def __init__(self, config, context):
        super().__init__(config, context)
        self.gossip_rounds = torch.zeros((), dtype=torch.int64)  # state: checkpointed

    def communicate(self, round: int) -> dict[str, float]:
        if round % self.config.skip:
            return {"gossiped": 0}
        self.network.gossip()  # every node to each neighbour, then X <- W X
        self.gossip_rounds += 1
        return {"gossiped": 1}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"gossip_rounds": self.gossip_rounds.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.gossip_rounds.copy_(state["gossip_rounds"])
