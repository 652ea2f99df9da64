"""StackedTensors: the (N, P) matrix stored as contiguous per-parameter blocks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gossamer.sim import stacked
from gossamer.sim.stacked import StackedTensors

SHAPES = [(3, 4), (3,), (2, 2, 2)]  # P = 12 + 3 + 8 = 23


def _matrix(n=5, seed=0):
    return torch.randn(n, 23, generator=torch.Generator().manual_seed(seed))


def test_one_allocation_of_contiguous_blocks_and_round_trip():
    x = _matrix()
    s = StackedTensors.from_matrix(x, SHAPES)
    assert s.num_nodes == 5 and s.num_params == 23
    assert all(b.is_contiguous() for b in s.blocks)
    storage = {b.untyped_storage().data_ptr() for b in s.blocks}
    assert len(storage) == 1  # carved from one buffer
    assert torch.equal(s.matrix(), x)
    tensors = s.tensors()
    assert [t.shape for t in tensors] == [(5, 3, 4), (5, 3), (5, 2, 2, 2)]
    assert torch.equal(tensors[0][2], x[2, :12].view(3, 4))
    assert torch.equal(tensors[2][4], x[4, 15:].view(2, 2, 2))


def test_row_views_write_through_and_index_ops_match_matrix_indexing():
    x = _matrix()
    s = StackedTensors.from_matrix(x, SHAPES)
    s.rows(1, 3).tensors()[1].add_(1.0)
    x[1:3, 12:15] += 1.0
    assert torch.equal(s.matrix(), x)
    index = torch.tensor([4, 0])
    assert torch.equal(s.index_select(index).matrix(), x[index])
    other = _matrix(2, seed=1)
    s.index_copy_(index, StackedTensors.from_matrix(other, SHAPES))
    x[index] = other
    assert torch.equal(s.matrix(), x)


def test_mean_fill_and_squared_distance_match_loops():
    x = _matrix()
    s = StackedTensors.from_matrix(x, SHAPES)
    mean = s.mean(torch.float64)
    assert torch.allclose(mean.matrix()[0], x.double().mean(0))
    expected = torch.tensor(
        [float(((x[i].double() - x.double().mean(0)) ** 2).sum()) for i in range(5)]
    )
    assert torch.allclose(s.squared_distance(mean), expected.double())
    s.fill_rows_(s.mean())
    assert torch.allclose(s.matrix(), x.mean(0).expand(5, -1))
    clone = s.clone()
    clone.blocks[0].zero_()
    assert not torch.equal(clone.matrix(), s.matrix())


def test_large_populations_are_advised_huge_pages_and_start_at_zero(monkeypatch):
    """A large CPU population asks for transparent huge pages before its first write
    (Linux), a small one does not; either way it starts zeroed."""
    advised = []
    real = stacked.advise_huge_pages

    def spy(buffer):
        advised.append((buffer.numel(), real(buffer)))
        return advised[-1][1]

    monkeypatch.setattr(stacked, "advise_huge_pages", spy)
    large = StackedTensors.zeros([(1024, 1024), (7,)], 4)  # 16 MB
    small = StackedTensors.zeros([(3, 5)], 2)
    assert [n for n, _ in advised] == [4 * (1024 * 1024 + 7), 30]
    assert advised[1][1] is False
    if sys.platform.startswith("linux"):
        assert advised[0][1] is True
    assert all(not block.any() for block in large.blocks + small.blocks)
    monkeypatch.setattr(stacked, "HUGE_PAGES", False)
    assert real(torch.empty(2**23)) is False


def _smaps_field(address: int, field: str) -> int:
    """A field of /proc/self/smaps (e.g. ``AnonHugePages:`` in kB) for the mapping
    holding ``address``."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(part, 16) for part in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == field:
            return int(line.split()[1])
    return 0


def test_huge_page_buffers_start_on_a_huge_page_zeroed_and_backed_by_one():
    """The gossip step's column block: zeroed, contiguous, on a 2 MB boundary and (where
    the kernel's THP mode allows) backed by huge pages."""
    buffer = stacked.huge_page_zeros(1000, 600, torch.float32)  # 2.4 MB: two huge pages
    assert buffer.shape == (1000, 600) and buffer.is_contiguous() and not buffer.any()
    buffer.fill_(3.0)  # writable, and still mapped after the function returned
    assert float(buffer.sum()) == 3.0 * 600_000
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if sys.platform.startswith("linux"):
        assert buffer.data_ptr() % 2**21 == 0
        assert not buffer.untyped_storage().resizable()  # a mapping of its own
        if thp.exists() and "[never]" not in thp.read_text():  # advised: eligible
            assert _smaps_field(buffer.data_ptr(), "THPeligible:") == 1
    doubles = stacked.huge_page_zeros(3, 5, torch.float64)
    assert doubles.dtype == torch.float64 and doubles.shape == (3, 5) and not doubles.any()


def test_huge_page_buffers_are_plain_zeros_when_turned_off(monkeypatch):
    monkeypatch.setattr(stacked, "HUGE_PAGES", False)
    buffer = stacked.huge_page_zeros(1000, 600, torch.float32)
    assert buffer.shape == (1000, 600) and buffer.is_contiguous() and not buffer.any()
    assert buffer.untyped_storage().resizable()  # torch's own memory, not a mapping
