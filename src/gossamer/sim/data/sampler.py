"""Per-node mini-batch sampling, vectorized over nodes and free of generator state.

Each node reads its data in epochs, like a shuffled DataLoader (as in DecentralizePy):
epoch e of node i visits the node's samples in the order of the keys
``hash(seed, node=i, epoch=e, j)``. A node's *cursor* counts the samples it has drawn;
its next batch is positions ``cursor .. cursor+B-1`` of that endless sequence, so a
node that skips training does not consume data. A node holding fewer samples than a
batch draws its batch uniformly *with replacement* (keys ``hash(seed, i, position)``).
The batch is therefore a pure function of (seed, node, cursor): independent of how
nodes are grouped or chunked.

:func:`sample_batch_indices` computes a batch from scratch; :class:`EpochSampler`
gives the same batches but keeps each node's current epoch orders, recomputing them
only when the node enters a new epoch (the orders are derived data, not state).
"""

from __future__ import annotations

import torch

from gossamer.sim.data.partition import NodeData
from gossamer.sim.rng import Purpose, hash32, uniform

_PAD_KEY = 2**33  # above every 32-bit key: padding sorts last


def epoch_orders(
    data: NodeData, nodes: torch.Tensor, first_epoch: torch.Tensor, seed: int
) -> torch.Tensor:
    """Visiting orders of epochs e and e+1 of each node: (n, 2, width) slot indices."""
    width = data.index.shape[1]
    device = nodes.device
    counts = data.counts[nodes]
    epoch = first_epoch[:, None, None] + torch.arange(2, device=device)[None, :, None]
    slot = torch.arange(width, device=device)
    keys = hash32(seed, Purpose.BATCH_ORDER, nodes[:, None, None], epoch, slot)
    keys = torch.where(slot < counts[:, None, None], keys, _PAD_KEY)  # padding last
    return torch.argsort(keys, dim=-1, stable=True)


def _batch_from_orders(
    data: NodeData,
    nodes: torch.Tensor,
    cursor: torch.Tensor,
    batch_size: int,
    seed: int,
    orders: torch.Tensor,
    rows: torch.Tensor,
) -> torch.Tensor:
    """Batches read from epoch orders; node k's orders are ``orders[rows[k]]``."""
    counts = data.counts[nodes]  # (n,)
    position = cursor[:, None] + torch.arange(batch_size, device=nodes.device)  # (n, B)
    which = (position // counts[:, None] - (cursor // counts)[:, None]).clamp_(max=1)
    local = orders[rows[:, None], which, position % counts[:, None]].long()  # (n, B) slots
    small = counts < batch_size
    if bool(small.any()):
        draw = uniform(seed, Purpose.BATCH_REPLACEMENT, nodes[:, None], position)
        with_replacement = (draw * counts[:, None]).long()
        local = torch.where(small[:, None], with_replacement, local)
    return data.index[nodes[:, None], local]


def sample_batch_indices(
    data: NodeData, nodes: torch.Tensor, cursor: torch.Tensor, batch_size: int, seed: int
) -> torch.Tensor:
    """Dataset indices of the next batch of each node, computed from scratch.

    Args:
        data: the partition.
        nodes: (n,) int64 node ids.
        cursor: (n,) int64 samples each of these nodes has drawn so far.
    Returns:
        (n, batch_size) int64 indices into the training set.
    """
    orders = epoch_orders(data, nodes, cursor // data.counts[nodes], seed)
    rows = torch.arange(len(nodes), device=nodes.device)
    return _batch_from_orders(data, nodes, cursor, batch_size, seed, orders, rows)


class EpochSampler:
    """:func:`sample_batch_indices` with each node's current epoch orders kept."""

    def __init__(self, data: NodeData, batch_size: int, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        n, width = data.index.shape
        device = data.index.device
        dtype = torch.int32 if width < 2**31 else torch.int64
        self.orders = torch.zeros(n, 2, width, dtype=dtype, device=device)  # (N, 2, width)
        self.epoch = torch.full((n,), -1, dtype=torch.int64, device=device)  # cached epoch

    def __call__(self, nodes: torch.Tensor, cursor: torch.Tensor) -> torch.Tensor:
        """(n, B) dataset indices of the next batch of ``nodes`` at ``cursor``."""
        first = cursor // self.data.counts[nodes]
        stale = first != self.epoch[nodes]
        if bool(stale.any()):
            renew = nodes[stale]
            self.orders[renew] = epoch_orders(self.data, renew, first[stale], self.seed).to(
                self.orders.dtype
            )
            self.epoch[renew] = first[stale]
        return _batch_from_orders(
            self.data, nodes, cursor, self.batch_size, self.seed, self.orders, nodes
        )
