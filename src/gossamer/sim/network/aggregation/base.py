"""The aggregator interface and the registry of aggregators.

An aggregator combines what each receiver holds after an exchange: in gossip, a node's
own model and the models of the neighbours whose messages it used; at the coordinator,
the models it received. The network gathers them into a padded stack, one row per
receiver (:meth:`Aggregator.aggregate`), so an aggregator is written once for all
receivers at once and for both places. Which messages a receiver uses is the network's
rule, the same for every aggregator (``gossamer.sim.network.network``): under loss, an
edge of an undirected graph only when both of its messages arrived.

A *linear* aggregator (``mean``, the default) is not called with a stack: the network
applies it as the mixing matrix W (gossip) or as a float64 sum (the coordinator), the
fast path of a run without an aggregator.

Adding an aggregator is one file: a config section (a subclass of
:class:`~gossamer.config.AggregatorConfig` with ``name`` fixed by a Literal) and an
:class:`Aggregator` subclass registered with ``@register_aggregator(ItsConfig)``; or,
without registering, ``aggregator: {name: custom, import_path: "file.py:Class"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

import torch

from gossamer.config import AGGREGATORS, AggregatorConfig


class Aggregator:
    """A rule that combines the models each receiver holds, for all receivers at once."""

    config_class: ClassVar[type[AggregatorConfig]]
    name: ClassVar[str]
    #: Whether it is the W-weighted mean that the network applies by mixing (then
    #: :meth:`aggregate` is never called).
    linear: ClassVar[bool] = False

    def __init__(self, config: AggregatorConfig):
        self.config = config

    def aggregate(
        self, values: list[torch.Tensor], count: torch.Tensor, center: list[torch.Tensor] | None
    ) -> list[torch.Tensor]:
        """The combined model of each of m receivers.

        Args:
            values: per parameter block l, (m, D, P_l): receiver i's models in slots
                ``0 .. count[i] - 1`` (in gossip, slot 0 is its own model); the slots
                after them are padding, of no value to rely on.
            count: (m,) int64, at least 1: how many models each receiver holds.
            center: per block, (m, P_l) the receiver's own model in gossip; None at the
                coordinator.
        Returns:
            per block, (m, P_l) new tensors.
        """
        raise NotImplementedError(f"aggregator {self.name!r} does not combine stacks")

    def stack_bytes(self, receivers: int, slots: int, num_params: int) -> int:
        """Bytes its temporaries take for a stack of this size, on top of the stack
        (for the network's chunking and the memory plan; default: one more stack)."""
        return receivers * slots * num_params * 4


class CoordinateWise(Aggregator):
    """An aggregator that treats each coordinate apart: over the first ``count[i]``
    values of each column of receiver i's stack, sorted (padding sorts last)."""

    def aggregate(self, values, count, center):
        combined = []
        for block in values:  # (m, D, P_l)
            slots = torch.arange(block.shape[1], device=block.device)
            padding = (slots[None, :] >= count[:, None])[:, :, None]  # (m, D, 1)
            ordered = block.masked_fill(padding, torch.inf).sort(dim=1).values
            combined.append(self.reduce_sorted(ordered, count.to(block.device)))
        return combined

    def reduce_sorted(self, ordered: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """(m, P_l) from (m, D, P_l) values sorted along D, the first ``count[i]`` of
        row i real (the rest +inf)."""
        raise NotImplementedError

    def stack_bytes(self, receivers, slots, num_params):
        # the padded copy, the sorted values, their int64 indices, the kept values
        return 5 * receivers * slots * num_params * 4


def mean_of_slots(ordered: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(m, P) the mean of each row's sorted values in slots ``lo[i] <= s < hi[i]``."""
    slots = torch.arange(ordered.shape[1], device=ordered.device)[None, :]
    kept = ((slots >= lo[:, None]) & (slots < hi[:, None]))[:, :, None]  # (m, D, 1)
    total = torch.where(kept, ordered, 0.0).sum(dim=1)
    return total / (hi - lo).to(ordered.dtype)[:, None]


A = TypeVar("A", bound=type[Aggregator])


def register_aggregator(config_class: type[AggregatorConfig]) -> Callable[[A], A]:
    """Class decorator: make ``aggregator: {name: <config name>}`` use this aggregator."""
    return AGGREGATORS.class_decorator(config_class)


AGGREGATORS.base = Aggregator  # what an aggregator named by import_path must subclass


def build_aggregator(config: AggregatorConfig) -> Aggregator:
    """The aggregator a validated ``aggregator`` section selects."""
    return AGGREGATORS.resolve(config)(config)
