"""What an evaluation measures: a subset of the test set and a sample of the nodes.

Evaluating every node on a whole test set costs as much as many training rounds (a
LeNet node on 10,000 CIFAR-10 images is about 100 training steps of batch 32), so
users of the papers evaluate less: DecentralizePy on a validation split, most on a
sample. ``eval:`` makes that a setting:

- ``eval.test_samples: m`` evaluates on a class-stratified subset of m test samples,
  the same subset for the whole run (so curves are comparable round to round): each
  class gets its share of m (largest remainders), and within a class the samples
  with the smallest keys hash(seed, EVALUATION, sample) are taken;
- ``eval.nodes: k`` evaluates k nodes each time, a new sample per evaluation: the k
  nodes with the smallest keys hash(seed, EVALUATION, round, node);
- the final evaluation always measures every node on the whole test set, so the
  summary and nodes.csv are exact.

A sampled evaluation reports a 95% interval on the mean accuracy over all nodes and
the whole test set, from two sources of error treated as independent (our choice):
the node sample (the standard error of the k accuracies, with the finite-population
correction 1 - k/N) and the test subset (a binomial standard error of the mean
accuracy on m of M samples, with 1 - m/M).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gossamer.sim.rng import Purpose, hash32


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """(size,) sorted indices of a class-stratified sample of ``labels``."""
    labels = labels.cpu()
    total = len(labels)
    if size >= total:
        return torch.arange(total)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * size / total
    quota = exact.floor().long()
    extra = size - int(quota.sum())  # largest remainders first (class order breaks ties)
    order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[order[:extra]] += 1
    keys = hash32(seed, Purpose.EVALUATION, torch.arange(total))
    chosen = []
    for c, k in zip(classes.tolist(), quota.tolist(), strict=True):
        members = (labels == c).nonzero().squeeze(1)
        chosen.append(members[torch.argsort(keys[members], stable=True)[:k]])
    return torch.sort(torch.cat(chosen)).values


def node_sample(num_nodes: int, size: int, seed: int, round: int) -> torch.Tensor:
    """(N,) bool: the ``size`` nodes evaluated after round ``round`` (all when 0)."""
    if size == 0 or size >= num_nodes:
        return torch.ones(num_nodes, dtype=torch.bool)
    keys = hash32(seed, Purpose.EVALUATION, round, torch.arange(num_nodes))
    chosen = torch.zeros(num_nodes, dtype=torch.bool)
    chosen[torch.argsort(keys, stable=True)[:size]] = True
    return chosen


def mean_accuracy_ci95(
    accuracy: np.ndarray, num_nodes: int, test_samples: int, test_total: int
) -> float:
    """Half-width of the 95% interval on the mean accuracy over all ``num_nodes`` nodes
    and the whole test set (``test_total`` samples), from the accuracies of a sample
    of nodes measured on ``test_samples`` of them; 0 when nothing was sampled."""
    k, mean = len(accuracy), float(np.mean(accuracy))
    nodes = 0.0
    if k < num_nodes and k > 1:
        nodes = float(np.var(accuracy, ddof=1)) / k * (1 - k / num_nodes)
    test = 0.0
    if test_samples < test_total:
        test = mean * (1 - mean) / test_samples * (1 - test_samples / test_total)
    return 1.96 * math.sqrt(nodes + test)
