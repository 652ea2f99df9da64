"""Data: dataset sources, partitions over nodes, per-node mini-batch sampling."""

import torch

from gossamer.config import Config
from gossamer.sim.cache import SHARED_DATASETS
from gossamer.sim.data.datasets import Dataset, dataset_info, dataset_key, load_dataset
from gossamer.sim.data.drift import ConceptShift, DriftEvent, drift_schedule
from gossamer.sim.data.partition import NodeData, partition_indices, to_node_data
from gossamer.sim.data.sampler import EpochSampler, sample_batch_indices


def load_partitioned(config: Config, classes: int, device: torch.device):
    """The configured dataset (built once for the runs of a process that share it) and
    its partition over the nodes: (Dataset on the CPU, NodeData on ``device``)."""
    dataset = SHARED_DATASETS.get(
        dataset_key(config.data, config.seed), lambda: load_dataset(config.data, config.seed)
    )
    labels = dataset.y_train.numpy()
    parts = partition_indices(labels, config.nodes, config.data, config.seed, dataset.writers)
    return dataset, to_node_data(parts, labels, classes, device)


__all__ = [
    "ConceptShift",
    "Dataset",
    "DriftEvent",
    "EpochSampler",
    "NodeData",
    "dataset_info",
    "dataset_key",
    "load_dataset",
    "load_partitioned",
    "partition_indices",
    "sample_batch_indices",
    "drift_schedule",
    "to_node_data",
]
