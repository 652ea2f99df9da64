"""Aggregators: how a receiver combines the models it holds (one file each, registered
by name)."""

from gossamer.sim.network.aggregation import (  # noqa: F401 - registers built-ins
    mean,
    median,
    trimmed_mean,
)
from gossamer.sim.network.aggregation.base import (
    Aggregator,
    CoordinateWise,
    build_aggregator,
    register_aggregator,
)

__all__ = ["Aggregator", "CoordinateWise", "build_aggregator", "register_aggregator"]
