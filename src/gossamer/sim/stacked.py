"""N nodes' copies of a model's parameters (or optimizer state) as one stacked tensor.

Logically this is the (N, P) matrix X of the design: row i is node i's parameters,
flattened in the order of the model template's ``parameters()``. Physically it is
*one* allocation of N x P values stored parameter-major: for each parameter tensor l
of the model (P_l values), a contiguous (N, P_l) block. ``matrix()`` gives the
node-major (N, P) matrix (a copy).

Why not a node-major (N, P) buffer with per-layer strided views: PyTorch's CPU
``baddbmm_`` uses one batched MKL GEMM only when its *result* is contiguous, and a
per-layer view of a node-major matrix never is (its batch stride is P); in place, it
falls back to one ``addmm_`` per node. With contiguous blocks, the fused MLP step
(update inside ``W.baddbmm_``) ran 30% faster (35.7 vs 46.5 ms per step, N=256,
784-200-10, batch 32, this project's 2-core machine) and grouped convolutions
reshape their weights without copies. Everything that mixes or compares models
works column by column, so it works block by block just as well.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import sys
from collections.abc import Sequence
from math import prod

import torch

_CHUNK_VALUES = 2**23  # values per temporary in reductions (64 MB in float64)
_HUGE_PAGE = 2 * 2**20
HUGE_PAGES = True  # back large CPU allocations with transparent huge pages (see below)


@functools.cache
def libc() -> ctypes.CDLL | None:
    """The C library, loaded once (finding it runs ``ldconfig``); None off Linux or
    where it cannot be loaded. ``advise_huge_pages`` and the engine's ``tune_allocator``
    call into it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def advise_huge_pages(buffer: torch.Tensor) -> bool:
    """Ask Linux to back an untouched CPU buffer with 2 MB transparent huge pages.

    Where the kernel's THP mode is ``madvise`` (the common default), large tensors get
    4 kB pages unless asked: the gossip step then reads each neighbour's piece of a
    column block from a different page, bound by address translation. Called before
    the buffer is first written, so its pages are faulted in huge. Returns whether
    the advice was taken (Linux only; a no-op elsewhere or for small buffers).
    """
    size = buffer.numel() * buffer.element_size()
    if not HUGE_PAGES or buffer.device.type != "cpu" or size < 4 * _HUGE_PAGE:
        return False
    c = libc()
    if c is None or not hasattr(c, "madvise"):
        return False
    start = -(-buffer.data_ptr() // _HUGE_PAGE) * _HUGE_PAGE  # whole huge pages inside
    end = (buffer.data_ptr() + size) // _HUGE_PAGE * _HUGE_PAGE
    return _madvise_huge(c, start, end - start)


def _madvise_huge(c: ctypes.CDLL, start: int, length: int) -> bool:
    madvise = c.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return madvise(start, length, 14) == 0  # MADV_HUGEPAGE


def huge_page_zeros(rows: int, cols: int, dtype: torch.dtype) -> torch.Tensor:
    """A zeroed (rows, cols) CPU buffer that starts on a 2 MB boundary and is backed
    by transparent huge pages where the kernel allows (see ``advise_huge_pages``).

    For small hot buffers such as the gossip step's column block: with 4 kB pages
    its physical pages land anywhere, and the gathers from it collide in the caches
    in some processes and not in others (the N = 10,000 gossip step took 1.0 s or
    3.0 s from one process to the next); physically contiguous 2 MB pages do not.
    """
    count = rows * cols
    c = libc()
    if not HUGE_PAGES or c is None or not hasattr(c, "madvise"):
        return torch.zeros(rows, cols, dtype=dtype)
    itemsize = torch.empty(0, dtype=dtype).element_size()
    pages = -(-count * itemsize // _HUGE_PAGE)
    # a fresh anonymous mapping (never touched, unlike reused heap memory), one huge
    # page longer than needed so that a 2 MB boundary falls inside it
    size = (pages + 1) * _HUGE_PAGE
    mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    raw = torch.frombuffer(mapping, dtype=dtype)
    first = (-raw.data_ptr() % _HUGE_PAGE) // itemsize
    _madvise_huge(c, raw.data_ptr() + first * itemsize, pages * _HUGE_PAGE)
    return raw[first : first + count].view(rows, cols).zero_()


class StackedTensors:
    """An (N, P) matrix stored as contiguous per-parameter blocks (N, P_l)."""

    def __init__(self, shapes: Sequence[tuple[int, ...]], blocks: list[torch.Tensor]):
        self.shapes = [tuple(s) for s in shapes]
        self.blocks = blocks  # [(N, P_l)], each contiguous

    # ------------------------------------------------------------ construction
    @classmethod
    def zeros(
        cls,
        shapes: Sequence[tuple[int, ...]],
        num_nodes: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> StackedTensors:
        """One zeroed allocation, carved into blocks."""
        sizes = [prod(s) for s in shapes]
        buffer = torch.empty(num_nodes * sum(sizes), device=device, dtype=dtype)
        advise_huge_pages(buffer)
        buffer.zero_()
        blocks, offset = [], 0
        for size in sizes:
            blocks.append(buffer[offset : offset + num_nodes * size].view(num_nodes, size))
            offset += num_nodes * size
        return cls(shapes, blocks)

    @classmethod
    def from_matrix(cls, matrix: torch.Tensor, shapes: Sequence[tuple[int, ...]]) -> StackedTensors:
        """Copy a node-major (N, P) matrix (or a (P,) row, broadcast to N=1)."""
        if matrix.dim() == 1:
            matrix = matrix.unsqueeze(0)
        stacked = cls.zeros(shapes, matrix.shape[0], matrix.device, matrix.dtype)
        stacked.copy_from_matrix(matrix)
        return stacked

    # ------------------------------------------------------------ shape
    @property
    def num_nodes(self) -> int:
        return self.blocks[0].shape[0]

    @property
    def num_params(self) -> int:
        return sum(block.shape[1] for block in self.blocks)

    @property
    def device(self) -> torch.device:
        return self.blocks[0].device

    def tensors(self) -> list[torch.Tensor]:
        """Per-parameter views (N, *shape_l), in template order (no copy)."""
        return [b.view(b.shape[0], *s) for b, s in zip(self.blocks, self.shapes, strict=True)]

    # ------------------------------------------------------------ rows
    def rows(self, lo: int, hi: int) -> StackedTensors:
        """Nodes lo..hi-1 as views (contiguous: a row range of a contiguous block)."""
        return StackedTensors(self.shapes, [b[lo:hi] for b in self.blocks])

    def index_select(self, index: torch.Tensor) -> StackedTensors:
        """The given nodes, copied."""
        return StackedTensors(self.shapes, [b.index_select(0, index) for b in self.blocks])

    def index_copy_(self, index: torch.Tensor, source: StackedTensors) -> None:
        """Write source's rows into the given nodes."""
        for block, src in zip(self.blocks, source.blocks, strict=True):
            block.index_copy_(0, index, src)

    def matrix(self) -> torch.Tensor:
        """The node-major (N, P) matrix (a copy)."""
        return torch.cat(self.blocks, dim=1)

    def copy_from_matrix(self, matrix: torch.Tensor) -> None:
        """Overwrite from a node-major (N, P) matrix, or broadcast a (1, P) row."""
        offset = 0
        for block in self.blocks:
            block.copy_(matrix[:, offset : offset + block.shape[1]].expand_as(block))
            offset += block.shape[1]

    def clone(self) -> StackedTensors:
        copy = StackedTensors.zeros(self.shapes, self.num_nodes, self.device, self.blocks[0].dtype)
        for dst, src in zip(copy.blocks, self.blocks, strict=True):
            dst.copy_(src)
        return copy

    # ------------------------------------------------------------ reductions
    def mean(
        self, dtype: torch.dtype | None = None, nodes: torch.Tensor | None = None
    ) -> StackedTensors:
        """The average over all nodes, or over the nodes where ``nodes`` (N,) is set: (1, P)."""
        if nodes is None:
            return StackedTensors(
                self.shapes, [b.mean(0, keepdim=True, dtype=dtype) for b in self.blocks]
            )
        weights = nodes.to(self.blocks[0].dtype) / nodes.sum()  # (N,): one GEMV per block
        return StackedTensors(self.shapes, [(weights @ b).unsqueeze(0) for b in self.blocks])

    def sum64(self, nodes: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per block, the float64 sum (P_l,) over all rows or the rows where ``nodes``
        (n,) bool is set; taken in row chunks that bound the float64 temporary."""
        index = None if nodes is None else nodes.nonzero().squeeze(1)
        count = self.num_nodes if index is None else len(index)
        sums = []
        for block in self.blocks:
            total = torch.zeros(block.shape[1], dtype=torch.float64, device=self.device)
            step = max(1, _CHUNK_VALUES // block.shape[1])
            for lo in range(0, count, step):
                rows = block[lo : lo + step] if index is None else block[index[lo : lo + step]]
                total += rows.double().sum(0)
            sums.append(total)
        return sums

    def fill_rows_(self, row: StackedTensors, nodes: torch.Tensor | None = None) -> None:
        """Set every node, or the nodes where ``nodes`` (N,) is set, to one row (1, P)."""
        index = None if nodes is None else nodes.nonzero().squeeze(1)
        for block, value in zip(self.blocks, row.blocks, strict=True):
            if index is None:
                block.copy_(value.expand_as(block))
            else:
                block.index_copy_(0, index, value.expand(len(index), -1))

    def squared_distance(self, other: StackedTensors) -> torch.Tensor:
        """(N,) float64: ||x_i - y||^2 against one row y (1, P), or ||x_i - y_i||^2 (N, P)."""
        total = torch.zeros(self.num_nodes, dtype=torch.float64, device=self.device)
        for block, value in zip(self.blocks, other.blocks, strict=True):
            step = max(1, _CHUNK_VALUES // block.shape[1])  # bounds the float64 temporary
            for lo in range(0, self.num_nodes, step):
                theirs = value if value.shape[0] == 1 else value[lo : lo + step]
                diff = block[lo : lo + step].double() - theirs.double()
                total[lo : lo + step] += diff.pow_(2).sum(1)
        return total
