"""Datasets, partitions and per-node batch sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gossamer.config import ConfigError, DataConfig
from gossamer.sim.data import load_dataset, partition_indices, sample_batch_indices, to_node_data
from gossamer.sim.rng import Purpose, hash32


def test_digits_is_sklearn_digits_split_stratified():
    data = load_dataset(DataConfig(dataset="digits", test_fraction=0.2), seed=0)
    assert data.x_train.shape[1:] == (1, 8, 8) and data.num_classes == 10
    assert len(data.y_train) + len(data.y_test) == 1797
    assert len(data.y_test) == 360  # ceil(0.2 * 1797)
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) == 1.0
    test_share = np.bincount(data.y_test.numpy()) / np.bincount(data.y_train.numpy())
    assert np.allclose(test_share, 0.25, atol=0.02)  # stratified: every class ~20/80


def test_synthetic_is_seeded_and_shaped():
    config = DataConfig(
        dataset="synthetic", synthetic={"samples": 500, "shape": [3, 4, 4], "classes": 5}
    )
    a, b = load_dataset(config, seed=1), load_dataset(config, seed=1)
    c = load_dataset(config, seed=2)
    assert a.x_train.shape == (400, 3, 4, 4) and a.num_classes == 5
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert np.bincount(np.concatenate([a.y_train, a.y_test])).tolist() == [100] * 5


def test_synthetic_separation_controls_difficulty():
    """Nearest-class-mean accuracy grows with separation (the classes are real)."""
    accuracy = []
    for separation in (0.5, 6.0):
        config = DataConfig(
            dataset="synthetic",
            synthetic={"samples": 2000, "shape": [20], "separation": separation},
        )
        data = load_dataset(config, seed=0)
        x, y = data.x_train.reshape(len(data.y_train), -1), data.y_train
        means = torch.stack([x[y == c].mean(0) for c in range(10)])
        accuracy.append(float((torch.cdist(x, means).argmin(1) == y).float().mean()))
    assert accuracy[0] < 0.4 < 0.9 < accuracy[1]


def _labels(n=600, classes=10, seed=0):
    return np.random.default_rng(seed).integers(classes, size=n)


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_every_partition_covers_each_sample_exactly_once(kind):
    labels = _labels()
    parts = partition_indices(labels, 12, DataConfig(partition=kind, alpha=1.0), seed=0)
    assert len(parts) == 12 and all(len(p) > 0 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))


def test_iid_sizes_differ_by_at_most_one():
    parts = partition_indices(_labels(), 7, DataConfig(partition="iid"), seed=0)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shards_give_each_node_k_label_sorted_shards():
    labels = np.repeat(np.arange(10), 60)  # 600 samples, 60 per class
    parts = partition_indices(labels, 20, DataConfig(partition="shards", shards_per_node=2), seed=0)
    # 40 shards of 15 samples, each within one class: a node sees at most 2 classes
    assert all(len(p) == 30 for p in parts)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)


def test_dirichlet_skew_grows_as_alpha_shrinks():
    labels = _labels(5000)

    def mean_classes_per_node(alpha):
        parts = partition_indices(
            labels, 10, DataConfig(partition="dirichlet", alpha=alpha), seed=0
        )
        return np.mean([(np.bincount(labels[p], minlength=10) >= 10).sum() for p in parts])

    assert mean_classes_per_node(0.1) < 5 < mean_classes_per_node(100.0) == 10


def test_partition_leaving_a_node_empty_is_rejected_with_the_key():
    with pytest.raises(
        ConfigError, match=r"data.partition: dirichlet\(alpha=0.01\) left \d+ of 50"
    ):
        partition_indices(_labels(200), 50, DataConfig(partition="dirichlet", alpha=0.01), seed=0)
    with pytest.raises(ConfigError, match="data.shards_per_node"):
        partition_indices(
            _labels(20), 11, DataConfig(partition="shards", shards_per_node=2), seed=0
        )


# ------------------------------------------------------------------ sampling


def _node_data(counts, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0, *counts])
    parts = [
        rng.permutation(np.arange(lo, hi)) for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)
    ]
    labels = np.zeros(offsets[-1], dtype=np.int64)
    return to_node_data(parts, labels, 1, torch.device("cpu")), parts


def _loop_batches(parts, node, seed, batch, steps):
    """Reference: node `node` reads its samples epoch after epoch, each epoch in the
    order of the keys hash(seed, node, epoch, slot); written as a plain loop."""
    held = parts[node]  # slot j of the node's index row
    stream = []
    epoch = 0
    while len(stream) < batch * steps:
        keys = [int(hash32(seed, Purpose.BATCH_ORDER, node, epoch, j)) for j in range(len(held))]
        stream += [int(held[j]) for j in sorted(range(len(held)), key=lambda j: (keys[j], j))]
        epoch += 1
    return [stream[s * batch : (s + 1) * batch] for s in range(steps)]


def test_sampler_matches_plain_loop_over_epochs():
    counts, batch, steps, seed = [9, 13, 5, 20], 4, 7, 11
    data, parts = _node_data(counts)
    nodes = torch.arange(len(counts))
    cursor = torch.zeros(len(counts), dtype=torch.int64)
    drawn = []
    for _ in range(steps):
        drawn.append(sample_batch_indices(data, nodes, cursor, batch, seed))
        cursor += batch
    for node in range(len(counts)):
        expected = _loop_batches(parts, node, seed, batch, steps)
        assert [d[node].tolist() for d in drawn] == expected


def test_every_epoch_visits_each_sample_once():
    data, parts = _node_data([10])
    batches = [
        sample_batch_indices(data, torch.tensor([0]), torch.tensor([5 * s]), 5, 0) for s in range(6)
    ]
    flat = torch.cat(batches, 1)[0].numpy()
    for epoch in range(3):
        assert sorted(flat[10 * epoch : 10 * epoch + 10]) == sorted(parts[0])
    assert not np.array_equal(flat[:10], flat[10:20])  # reshuffled each epoch


def test_sampling_does_not_depend_on_which_nodes_are_drawn_together():
    data, _ = _node_data([8, 3, 15, 6, 11])
    cursor = torch.tensor([0, 4, 30, 7, 2])
    together = sample_batch_indices(data, torch.arange(5), cursor, 4, 9)
    for i in range(5):
        alone = sample_batch_indices(data, torch.tensor([i]), cursor[i : i + 1], 4, 9)
        assert torch.equal(alone[0], together[i])
    subset = torch.tensor([3, 1])
    assert torch.equal(sample_batch_indices(data, subset, cursor[subset], 4, 9), together[subset])


def test_node_with_fewer_samples_than_a_batch_draws_with_replacement():
    data, parts = _node_data([3, 40])
    batch = sample_batch_indices(data, torch.arange(2), torch.zeros(2, dtype=torch.int64), 16, 0)
    small = batch[0].numpy()
    assert set(small) <= set(parts[0]) and len(small) == 16
    assert len(set(batch[1].numpy())) == 16  # the large node: no repeats within an epoch


def test_epoch_sampler_with_cached_orders_gives_the_same_batches():
    from gossamer.sim.data import EpochSampler

    data, _ = _node_data([9, 13, 5, 20, 3])
    sampler = EpochSampler(data, batch_size=4, seed=7)
    cursor = torch.zeros(5, dtype=torch.int64)
    subsets = [torch.arange(5), torch.tensor([1, 3]), torch.tensor([4, 0, 2])]
    for step in range(30):  # many epochs; varying subsets of nodes advance
        nodes = subsets[step % 3]
        cached = sampler(nodes, cursor[nodes])
        assert torch.equal(cached, sample_batch_indices(data, nodes, cursor[nodes], 4, 7))
        cursor[nodes] += 4
