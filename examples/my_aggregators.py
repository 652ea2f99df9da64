"""An aggregator of one's own, for docs/aggregation.md: the coordinate-wise maximum
(an example of the interface, not a robust rule)."""

from typing import Literal

from gossamer.config import AggregatorConfig
from gossamer.sim.network import Aggregator


class LargestConfig(AggregatorConfig):
    name: Literal["largest"] = "largest"


class Largest(Aggregator):
    config_class = LargestConfig

    def aggregate(self, values, count, center):
        # values: per parameter block, (receivers, slots, P_l); receiver i holds
        # count[i] models in its first slots (in gossip, slot 0 is its own), the
        # rest is padding. center: per block, the receivers' own models (gossip) or
        # None (the coordinator). Returns per block (receivers, P_l).
        out = []
        for block in values:
            slots = block.new_tensor(range(block.shape[1]))
            padding = slots[None, :] >= count[:, None]
            out.append(block.masked_fill(padding[:, :, None], -1e30).amax(1))
        return out
