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
                after them are padding, of no value to rely on. A view of a
                slot-major (D, m, P_l) stack, which the aggregator may overwrite.
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
    values of each column of receiver i's stack, sorted (padding sorts last).

    The stack is sorted along its slots in place. With a few slots (a node's
    neighbourhood) by an odd-even transposition sorting network (Knuth, TAOCP vol. 3,
    5.3.4): D rounds of elementwise min/max on slot-major tiles of :data:`SORT_TILE`
    values, which stay in cache: measured 4x faster than ``torch.sort`` along a small
    dimension (N = 1,000 x 159,010 parameters x 7 slots, 2 cores). With many (a
    coordinator's uploads), ``torch.sort``. Both give the same sorted values.
    """

    def aggregate(self, values, count, center):
        combined = []
        for block in values:  # (m, D, P_l), best a view of a slot-major (D, m, P_l) stack
            ordered = block.transpose(0, 1)
            if not ordered.is_contiguous():
                ordered = ordered.contiguous()
            count = count.to(block.device)
            for slot in range(1, ordered.shape[0]):  # padding sorts last
                short = (count <= slot).nonzero().squeeze(1)
                if len(short):
                    ordered[slot].index_fill_(0, short, torch.inf)
            sort_slots_(ordered)
            combined.append(self.reduce_sorted(ordered, count))
        return combined

    def reduce_sorted(self, ordered: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """(m, P_l) from (D, m, P_l) values sorted along D (slot-major), the first
        ``count[i]`` of receiver i real (the rest +inf)."""
        raise NotImplementedError

    def stack_bytes(self, receivers, slots, num_params):
        # the running sum and the min of a tile; torch.sort's values and int64 indices
        if slots > NETWORK_SLOTS:
            return 3 * receivers * slots * num_params * 4
        return 2 * receivers * num_params * 4


#: Values of each slot sorted at once by the sorting network (about 2 MB of 7 slots).
SORT_TILE = 1 << 16
#: The most slots sorted by the network; more by torch.sort.
NETWORK_SLOTS = 16


def sort_slots_(stack: torch.Tensor) -> None:
    """Sort a contiguous (D, ...) stack along its first dimension, in place."""
    slots = stack.shape[0]
    flat = stack.view(slots, -1)
    if slots > NETWORK_SLOTS:
        flat.copy_(flat.sort(dim=0).values)
        return
    length = flat.shape[1]
    smaller = torch.empty(min(SORT_TILE, length), dtype=flat.dtype, device=flat.device)
    for lo in range(0, length, SORT_TILE):
        tile = flat[:, lo : lo + SORT_TILE]
        low = smaller[: tile.shape[1]]
        for rnd in range(slots):
            for i in range(rnd % 2, slots - 1, 2):
                a, b = tile[i], tile[i + 1]
                torch.minimum(a, b, out=low)
                torch.maximum(a, b, out=b)
                a.copy_(low)


def mean_of_slots(ordered: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(m, P) the mean of each receiver's sorted values in slots ``lo[i] <= s < hi[i]``
    of a slot-major (D, m, P) stack."""
    total = torch.zeros_like(ordered[0])
    for slot in range(ordered.shape[0]):
        kept = (lo <= slot) & (slot < hi)  # (m,)
        if bool(kept.all()):
            total.add_(ordered[slot])
        elif bool(kept.any()):
            total.add_(torch.where(kept[:, None], ordered[slot], 0.0))  # not inf x 0
    return total / (hi - lo).to(ordered.dtype)[:, None]


A = TypeVar("A", bound=type[Aggregator])


def register_aggregator(config_class: type[AggregatorConfig]) -> Callable[[A], A]:
    """Class decorator: make ``aggregator: {name: <config name>}`` use this aggregator."""
    return AGGREGATORS.class_decorator(config_class)


AGGREGATORS.base = Aggregator  # what an aggregator named by import_path must subclass


def build_aggregator(config: AggregatorConfig) -> Aggregator:
    """The aggregator a validated ``aggregator`` section selects."""
    return AGGREGATORS.resolve(config)(config)
