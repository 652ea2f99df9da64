"""``aggregator: median``: the coordinate-wise median."""

from __future__ import annotations

from typing import Literal

import torch

from gossamer.config import AggregatorConfig
from gossamer.sim.network.aggregation.base import (
    CoordinateWise,
    mean_of_slots,
    register_aggregator,
)


class MedianConfig(AggregatorConfig):
    name: Literal["median"] = "median"


@register_aggregator(MedianConfig)
class Median(CoordinateWise):
    """Coordinate-wise median (Yin, Chen, Ramchandran, Bartlett, ICML 2018, Definition
    1): each coordinate of the combined model is the median of the c values the
    receiver holds for it. Of an even count, the mean of the two middle values (as
    numpy's median; the paper leaves it open). In gossip, over a node's own model and
    its neighbours', unweighted.
    """

    def reduce_sorted(self, ordered: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        lo = torch.div(count - 1, 2, rounding_mode="floor")  # the lower middle slot
        hi = torch.div(count, 2, rounding_mode="floor") + 1  # past the upper middle one
        return mean_of_slots(ordered, lo, hi)
