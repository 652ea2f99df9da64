"""Sharding the nodes over processes: which nodes a rank owns, and the collectives.

A run on R ranks (``torchrun`` or ``gossamer run --ranks R``) gives each rank a
contiguous block of nodes: its rows of the stacked parameters and optimizer state,
its nodes' data cursors and concepts. Everything else is replicated: the config, the
topology, the data indices, the ledger, and every decision a protocol takes (masks,
violations, coordinator choices). Decisions are computed from small (N,) vectors that
every rank gathers, and from the keyed random numbers, so all ranks take the same one
and no rank branches on its own data before a collective.

:class:`Shard` is the one place that talks to ``torch.distributed``. On one process
(``Shard.single``) every collective is the identity, and the code paths are the same,
so a run gives the same numbers on any number of ranks:

- per-node values are computed where the nodes live and gathered (exact copies);
- gossip exchanges only the rows a rank's nodes need from other ranks (a halo, one
  ``all_to_all_single`` per parameter block, with a plan built once from the graph),
  or all rows (``all_gather_single``) when the halo is most of them, and each
  rank multiplies its rows of W by them in global column order: the same sums in
  the same order as on one process (checked in the tests);
- means over nodes (the coordinator's average, the average model) are float64 sums,
  reduced over ranks with ``all_reduce`` and rounded once to float32. On one process
  the same float64 sum is taken. Float64 sums of float32 values taken in a different
  grouping can differ in their last bits, and the result then rounds to a different
  float32 only when it falls within that difference of a rounding boundary (odds
  about 2^-29 per coordinate); in our tests every value is bit-identical.

``Shard.moved_bytes`` counts what torch.distributed actually moved between ranks
(received by this rank), apart from the simulated messages of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from gossamer.sim.stacked import StackedTensors

# all_gather_into_tensor was renamed all_gather_single in torch 2.13
_all_gather = getattr(dist, "all_gather_single", None) or getattr(
    dist, "all_gather_into_tensor", None
)


def block_bounds(num_nodes: int, world: int, granule: int = 1) -> list[tuple[int, int]]:
    """Each rank's node range [lo, hi): contiguous, made of whole ``granule``-node
    units (the engine's node chunks, so that every chunk a rank computes is one a
    single process computes), the first ``units mod R`` ranks one unit longer. With
    fewer units than ranks, single nodes are the units."""
    units = -(-num_nodes // granule)
    if units < world:
        granule, units = 1, num_nodes
    base, extra = divmod(units, world)
    bounds, lo = [], 0
    for rank in range(world):
        hi = min(num_nodes, lo + (base + (rank < extra)) * granule)
        bounds.append((lo, hi))
        lo = hi
    return bounds


@dataclass
class Shard:
    """The nodes this rank owns, and the collectives over all ranks."""

    num_nodes: int
    rank: int = 0
    world: int = 1
    granule: int = 1  # nodes per unit of the split (the engine's node chunk)
    device: torch.device = torch.device("cpu")  # of small collectives (CUDA for nccl)
    bounds: list[tuple[int, int]] = field(default_factory=list)
    moved_bytes: int = 0  # bytes torch.distributed delivered to this rank

    def __post_init__(self) -> None:
        if not self.bounds:
            self.bounds = block_bounds(self.num_nodes, self.world, self.granule)
        if self.world > 1 and min(hi - lo for lo, hi in self.bounds) == 0:
            raise ValueError(
                f"ranks: {self.world} ranks for {self.num_nodes} nodes leave a rank without "
                "nodes; use at most as many ranks as nodes"
            )

    @classmethod
    def single(cls, num_nodes: int) -> Shard:
        return cls(num_nodes)

    @classmethod
    def current(cls, num_nodes: int, granule: int = 1, device: torch.device | None = None) -> Shard:
        """This process's shard: of the initialized process group, else the single one."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            device = device or torch.device("cpu")
            return cls(num_nodes, dist.get_rank(), dist.get_world_size(), granule, device)
        return cls.single(num_nodes)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def lo(self) -> int:
        return self.bounds[self.rank][0]

    @property
    def hi(self) -> int:
        return self.bounds[self.rank][1]

    @property
    def local_nodes(self) -> int:
        return self.hi - self.lo

    def local(self, vector: torch.Tensor) -> torch.Tensor:
        """This rank's part of a per-node vector (N, ...)."""
        return vector[self.lo : self.hi] if self.distributed else vector

    # ------------------------------------------------------------ collectives
    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Every rank's rows (n_r, ...) concatenated into (N, ...), on every rank."""
        if not self.distributed:
            return local
        out, width = self.gather_padded(local)
        parts = [out[r * width : r * width + hi - lo] for r, (lo, hi) in enumerate(self.bounds)]
        return torch.cat(parts)

    @property
    def width(self) -> int:
        """The most nodes a rank holds: each rank's slot in a padded gather."""
        return max(hi - lo for lo, hi in self.bounds)

    def gather_padded(self, local: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Every rank's rows in slots of ``width`` rows (rank r's at r * width, padding
        after): (R * width, ...), without the copy that removing the padding takes."""
        width = self.width
        padded = local
        if len(local) != width or not local.is_contiguous():
            padded = local.new_zeros((width, *local.shape[1:]))
            padded[: len(local)] = local
        out = local.new_empty((width * self.world, *local.shape[1:]))
        send, receive = padded, out
        if out.dtype == torch.bool:  # collectives move numbers
            send, receive = padded.view(torch.uint8), out.view(torch.uint8)
        _all_gather(receive, send)
        self.moved_bytes += (out.numel() - padded.numel()) * out.element_size()
        return out, width

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (every rank gets the sum)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            self.moved_bytes += tensor.numel() * tensor.element_size() * (self.world - 1)
        return tensor

    def total(self, value: float) -> float:
        """A float64 number summed over ranks."""
        if not self.distributed:
            return value
        return float(self.sum_(torch.tensor([value], dtype=torch.float64, device=self.device))[0])

    def mean(self, params: StackedTensors, nodes: torch.Tensor | None = None) -> StackedTensors:
        """(1, P) float32: the mean of this rank's rows ``params`` and every other rank's,
        over all nodes or the nodes where ``nodes`` (N,) bool is set: a float64 sum,
        reduced over ranks, divided and rounded once."""
        local = None if nodes is None else self.local(nodes).to(params.device)
        count = self.num_nodes if nodes is None else int(nodes.sum())
        sums = params.sum64(local)
        total = self.sum_(torch.cat(sums)) if self.distributed else None
        blocks, offset = [], 0
        for part in sums:
            if total is not None:
                part = total[offset : offset + len(part)]
                offset += len(part)
            blocks.append((part / count).to(params.blocks[0].dtype).unsqueeze(0))
        return StackedTensors(params.shapes, blocks)

    def all_objects(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (small, JSON-like), in rank order; also a barrier."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def check_same(self, what: str, value: str) -> None:
        """Refuse to go on unless every rank holds the same ``value`` (a hash)."""
        if not self.distributed:
            return
        values = self.all_objects(value)
        differing = [r for r, v in enumerate(values) if v != values[0]]
        if differing:
            raise ValueError(
                f"ranks: the {what} differs between ranks (rank 0 has {values[0]!r}, "
                f"rank {differing[0]} has {values[differing[0]]!r}); every rank must run "
                "the same one"
            )


class Halo:
    """The rows of X a rank needs to compute its rows of ``W X``, and how it gets them.

    Built once from W's sparsity (every rank knows the whole graph, so every rank can
    compute what every other needs, with no communication): ``columns`` are the global
    node ids this rank's rows of W read, in increasing order. ``exchange(block)``
    returns those rows of X, (len(columns), P_l), in that order: by one
    ``all_to_all_single`` of just the needed rows, or by ``all_gather_single`` of
    all rows when more than ``dense_share`` of the remote rows are needed (dense or
    expander graphs over few ranks), where sending each rank the full block is simpler
    and no slower.
    """

    def __init__(self, shard: Shard, rows: np.ndarray, cols: np.ndarray, dense_share: float = 0.5):
        self.shard = shard
        n, world = shard.num_nodes, shard.world
        rank_of = np.repeat(np.arange(world), [hi - lo for lo, hi in shard.bounds])  # (N,)
        needed = np.zeros((world, n), dtype=bool)  # needed[r, j]: rank r reads node j's row
        needed[rank_of[rows], cols] = True
        for r, (lo, hi) in enumerate(shard.bounds):
            needed[r, lo:hi] = False  # its own rows it has
        remote = sum(n - (hi - lo) for lo, hi in shard.bounds)
        self.dense = world > 1 and needed.sum() > dense_share * remote
        me, (lo, hi) = shard.rank, shard.bounds[shard.rank]
        mine = needed[me].copy()
        mine[lo:hi] = True
        if self.dense:
            mine[:] = True
        self.columns = np.flatnonzero(mine)  # global ids, increasing
        self.position = np.full(n, -1, dtype=np.int64)  # global id -> row of the halo
        if self.dense:  # the padded gather's layout: rank r's rows from r * width
            first = np.array([lo for lo, _ in shard.bounds])
            self.position[:] = rank_of * shard.width + np.arange(n) - first[rank_of]
            self.size = shard.width * world
        else:
            self.position[self.columns] = np.arange(len(self.columns))
            self.size = len(self.columns)  # rows of the halo
        # what this rank sends each rank (local row ids), and receives from each
        self.send = [torch.as_tensor(np.flatnonzero(needed[r, lo:hi])) for r in range(world)]
        self.recv_counts = [int(needed[me, a:b].sum()) for a, b in shard.bounds]

    def exchange(self, block: torch.Tensor) -> torch.Tensor:
        """The halo rows (size, w) of X, given this rank's rows ``block`` (n, w) (a
        column range of a parameter block); row ``position[j]`` is node j's."""
        shard = self.shard
        if not shard.distributed:
            return block
        if self.dense:
            return shard.gather_padded(block)[0]
        send = torch.cat([block.index_select(0, index.to(block.device)) for index in self.send])
        send = send.contiguous()
        received = block.new_empty((sum(self.recv_counts), block.shape[1]))
        dist.all_to_all_single(
            received,
            send,
            output_split_sizes=self.recv_counts,
            input_split_sizes=[len(index) for index in self.send],
        )
        shard.moved_bytes += received.numel() * received.element_size()
        before = sum(self.recv_counts[: shard.rank])
        return torch.cat([received[:before], block, received[before:]])

    def local_matrix(
        self, rows: np.ndarray, cols: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's entries of W (global COO) with rows local and columns as halo rows."""
        lo, hi = self.shard.lo, self.shard.hi
        keep = (rows >= lo) & (rows < hi)
        columns = self.position[cols[keep]]
        if (columns < 0).any():
            raise RuntimeError("gossip: an edge reads a node outside this rank's halo")
        return rows[keep] - lo, columns, weights[keep]


@dataclass
class NodeRows:
    """Per-node state in a state dict: this rank's rows ``[lo, lo + len(tensor))`` of a
    tensor of ``total`` rows (nodes, or edges ordered by receiver). A checkpoint stores
    such tensors by global row, so a run saved on R ranks resumes on any number."""

    tensor: torch.Tensor
    lo: int
    total: int
    space: str = "nodes"  # or "edges": the rows of a per-edge tensor
