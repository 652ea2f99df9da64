"""Partitions of a training set over nodes, and their on-device index form.

- ``iid``: a seeded permutation cut into near-equal parts.
- ``dirichlet``: label skew of Hsu, Qi & Brown (2019, arXiv 1909.06335): for each
  class, proportions over nodes are drawn from Dirichlet(alpha) and that class's
  samples are cut accordingly. Small alpha: few classes per node.
- ``shards``: McMahan et al. (2017) and DecentralizePy's ``KShardDataPartitioner``
  (used by SkipTrain): sort by label, cut into nodes x k equal shards, give each node
  k shards at random.
- ``natural``: the dataset's own writers (LEAF/FEMNIST: one writer per client). With
  as many nodes as writers, one writer per node; with fewer nodes, each node gets
  several whole writers (a seeded permutation of the writers dealt out in turn, so
  nodes differ by at most one writer); with more nodes than writers, every writer
  gets at least one node and the extra nodes go to writers in proportion to their
  sample counts (largest remainder), each writer's samples split evenly over its
  nodes, so node sizes stay balanced.

A partition that leaves a node with no training sample is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gossamer.config import ConfigError, DataConfig
from gossamer.sim.rng import Purpose, numpy_generator


@dataclass(frozen=True)
class NodeData:
    """Which training samples each node holds, as index tensors (never copies)."""

    index: torch.Tensor  # (N, max_n) int64 dataset indices; row i valid up to counts[i]
    counts: torch.Tensor  # (N,) int64 samples per node
    label_counts: np.ndarray  # (N, C) int64 label histogram per node

    @property
    def num_nodes(self) -> int:
        return self.index.shape[0]


def partition_indices(
    labels: np.ndarray,
    nodes: int,
    config: DataConfig,
    seed: int,
    writers: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split sample indices over nodes; raises ConfigError if a node gets nothing.

    Args:
        writers: (M,) writer of each sample, for the natural partition.
    """
    rng = numpy_generator(seed, Purpose.PARTITION)
    total = len(labels)
    if nodes > total:  # the files told only now (gossamer.config.work checks the rest)
        raise ConfigError(
            f"nodes: expected at most the {total:,} training samples of data.dataset "
            f"{config.dataset!r}, as every node needs one; got {nodes:,}"
        )
    if config.partition == "natural":
        if writers is None:
            raise ConfigError(
                f"data.partition: 'natural' needs writers; {config.dataset!r} has none"
            )
        parts = _natural(writers, nodes, rng)
    elif config.partition == "iid":
        parts = np.array_split(rng.permutation(total), nodes)
    elif config.partition == "dirichlet":
        parts = _dirichlet(labels, nodes, config.alpha, rng)
    else:
        shards = nodes * config.shards_per_node
        if shards > total:
            raise ConfigError(
                f"data.shards_per_node: nodes x shards_per_node ({shards}) exceeds the "
                f"{total} training samples; got {config.shards_per_node}"
            )
        shuffled = rng.permutation(total)
        by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
        pieces = np.array_split(by_label, shards)
        owner = rng.permutation(shards).reshape(nodes, config.shards_per_node)
        parts = [np.concatenate([pieces[s] for s in row]) for row in owner]
    parts = [np.sort(p).astype(np.int64) for p in parts]
    empty = [i for i, p in enumerate(parts) if len(p) == 0]
    if empty:
        detail = f"(alpha={config.alpha})" if config.partition == "dirichlet" else ""
        raise ConfigError(
            f"data.partition: {config.partition}{detail} left {len(empty)} of {nodes} nodes "
            f"with no training sample (first: node {empty[0]}); use more data, fewer nodes, "
            "a larger data.alpha or another seed"
        )
    return parts


def _natural(writers: np.ndarray, nodes: int, rng: np.random.Generator) -> list[np.ndarray]:
    ids = rng.permutation(np.unique(writers))
    samples = [np.flatnonzero(writers == w) for w in ids]
    if nodes <= len(ids):  # deal whole writers out in turn
        return [np.concatenate(samples[i::nodes]) for i in range(nodes)]
    sizes = np.array([len(s) for s in samples], dtype=np.float64)
    share = 1 + (nodes - len(ids)) * sizes / sizes.sum()  # >= 1 node per writer
    count = np.floor(share).astype(np.int64)
    leftover = np.argsort(-(share - count), kind="stable")[: nodes - count.sum()]
    count[leftover] += 1  # largest remainders take the remaining nodes
    return [part for s, k in zip(samples, count, strict=True) for part in np.array_split(s, k)]


def _dirichlet(
    labels: np.ndarray, nodes: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    parts: list[list[np.ndarray]] = [[] for _ in range(nodes)]
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        shares = rng.dirichlet(np.full(nodes, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        for node, chunk in enumerate(np.split(members, cuts)):
            parts[node].append(chunk)
    return [np.concatenate(p) for p in parts]


def to_node_data(
    parts: list[np.ndarray], labels: np.ndarray, num_classes: int, device: torch.device
) -> NodeData:
    """Pack per-node index arrays into a padded (N, max_n) tensor on ``device``."""
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    table = np.zeros((len(parts), counts.max()), dtype=np.int64)
    for i, p in enumerate(parts):  # set-up only, once per run
        table[i, : len(p)] = p
    histogram = np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
    return NodeData(
        index=torch.from_numpy(table).to(device),
        counts=torch.from_numpy(counts).to(device),
        label_counts=histogram,
    )
