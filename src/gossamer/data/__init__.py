"""Data: dataset sources, partitions over nodes, per-node mini-batch sampling."""

from gossamer.data.datasets import Dataset, dataset_info, load_dataset
from gossamer.data.partition import NodeData, partition_indices, to_node_data
from gossamer.data.sampler import sample_batch_indices

__all__ = [
    "Dataset",
    "NodeData",
    "dataset_info",
    "load_dataset",
    "partition_indices",
    "sample_batch_indices",
    "to_node_data",
]
