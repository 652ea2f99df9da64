"""StackedTensors: the (N, P) matrix stored as contiguous per-parameter blocks."""

from __future__ import annotations

import torch

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
