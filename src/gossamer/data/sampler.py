"""Per-node mini-batch sampling, vectorized over nodes and free of generator state.

Each node reads its data in epochs, like a shuffled DataLoader (as in DecentralizePy):
epoch e of node i visits the node's samples in the order of the keys
``hash(seed, node=i, epoch=e, j)``. A node's *cursor* counts the samples it has drawn;
its next batch is positions ``cursor .. cursor+B-1`` of that endless sequence, so a
node that skips training does not consume data. A node holding fewer samples than a
batch draws its batch uniformly *with replacement* (keys ``hash(seed, i, position)``).
The batch is therefore a pure function of (seed, node, cursor): independent of how
nodes are grouped or chunked.
"""

from __future__ import annotations

import torch

from gossamer.data.partition import NodeData
from gossamer.rng import Purpose, hash32, uniform

_PAD_KEY = 2**33  # above every 32-bit key: padding sorts last


def sample_batch_indices(
    data: NodeData, nodes: torch.Tensor, cursor: torch.Tensor, batch_size: int, seed: int
) -> torch.Tensor:
    """Dataset indices of the next batch of each node.

    Args:
        data: the partition.
        nodes: (n,) int64 node ids.
        cursor: (n,) int64 samples each of these nodes has drawn so far.
    Returns:
        (n, batch_size) int64 indices into the training set.
    """
    counts = data.counts[nodes]  # (n,)
    width = data.index.shape[1]
    device = nodes.device
    position = cursor[:, None] + torch.arange(batch_size, device=device)  # (n, B)
    first_epoch = cursor // counts  # (n,)
    # Keys of the two epochs a batch can touch (B <= count), padded slots last.
    epoch = first_epoch[:, None, None] + torch.arange(2, device=device)[None, :, None]
    slot = torch.arange(width, device=device)
    keys = hash32(seed, Purpose.BATCH_ORDER, nodes[:, None, None], epoch, slot)
    keys = torch.where(slot < counts[:, None, None], keys, _PAD_KEY)  # (n, 2, width)
    order = torch.argsort(keys, dim=-1, stable=True).view(len(nodes), 2 * width)
    which = (position // counts[:, None] - first_epoch[:, None]).clamp_(max=1)
    local = order.gather(1, which * width + position % counts[:, None])  # (n, B)
    small = counts < batch_size
    if bool(small.any()):
        draw = uniform(seed, Purpose.BATCH_REPLACEMENT, nodes[:, None], position)
        with_replacement = (draw * counts[:, None]).long()
        local = torch.where(small[:, None], with_replacement, local)
    return data.index[nodes[:, None], local]
