"""``aggregator: mean``: the W-weighted mean of gossip, the coordinator's plain mean."""

from __future__ import annotations

from typing import Literal

from gossamer.config import AggregatorConfig
from gossamer.sim.network.aggregation.base import Aggregator, register_aggregator


class MeanConfig(AggregatorConfig):
    name: Literal["mean"] = "mean"


@register_aggregator(MeanConfig)
class Mean(Aggregator):
    """The mean every protocol used before aggregators existed (the default): in
    gossip ``x_i <- sum_j W_ij x_j`` with the topology's weights, recomputed on the
    live subgraph under conditions; at the coordinator the unweighted mean of the
    models received. The network applies it by mixing (a linear aggregator)."""

    linear = True
