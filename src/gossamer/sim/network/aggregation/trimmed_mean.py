"""``aggregator: trimmed_mean``: the coordinate-wise trimmed mean."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from gossamer.config import AggregatorConfig
from gossamer.sim.network.aggregation.base import (
    CoordinateWise,
    mean_of_slots,
    register_aggregator,
)


class TrimmedMeanConfig(AggregatorConfig):
    name: Literal["trimmed_mean"] = "trimmed_mean"
    trim: float = Field(
        0.1,
        ge=0.0,
        lt=0.5,
        description="fraction beta of the values cut at each end, per coordinate",
    )


@register_aggregator(TrimmedMeanConfig)
class TrimmedMean(CoordinateWise):
    """Coordinate-wise trimmed mean (Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust
    Distributed Learning: Towards Optimal Statistical Rates", ICML 2018, Definition 2):
    of the c values a receiver holds for a coordinate, the floor(beta c) largest and
    the floor(beta c) smallest are removed and the rest averaged.

    Yin et al. define it at a server; in gossip a node applies it to its own model and
    its neighbours' (BRIDGE-T of Yang and Bajwa, "ByRDiE / BRIDGE", IEEE TSIPN 2019,
    trims a fixed count b instead: our choice is Yin's fraction, so that a node of
    degree d cuts floor(beta (d + 1)) at each end). The values are not weighted by W.
    ``trim: 0`` is the unweighted mean.
    """

    def reduce_sorted(self, ordered: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        cut = torch.floor(self.config.trim * count.to(torch.float64)).to(count.dtype)
        return mean_of_slots(ordered, cut, count - cut)
