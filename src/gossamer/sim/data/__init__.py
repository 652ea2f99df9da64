"""Data: dataset sources, partitions over nodes, per-node mini-batch sampling."""

from gossamer.sim.data.datasets import Dataset, dataset_info, dataset_key, load_dataset
from gossamer.sim.data.drift import ConceptShift, DriftEvent, drift_schedule
from gossamer.sim.data.partition import NodeData, partition_indices, to_node_data
from gossamer.sim.data.sampler import EpochSampler, sample_batch_indices

__all__ = [
    "ConceptShift",
    "Dataset",
    "DriftEvent",
    "EpochSampler",
    "NodeData",
    "dataset_info",
    "dataset_key",
    "load_dataset",
    "partition_indices",
    "sample_batch_indices",
    "drift_schedule",
    "to_node_data",
]
