"""Shared fixtures: small configs that run in well under a second."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from gossamer.config import load_config

torch.set_num_threads(2)

ROOT = Path(__file__).parents[1]


# A tiny synthetic experiment that runs in well under a second (seed 3).
SMALL = {
    "seed": 3,
    "nodes": 6,
    "rounds": 4,
    "eval_every": 2,
    "device": "cpu",
    "data": {
        "dataset": "synthetic",
        "partition": "iid",
        "batch_size": 5,
        "synthetic": {"samples": 300, "shape": [12], "classes": 3},
    },
    "model": {"name": "mlp", "hidden": [7]},
    "topology": {"kind": "ring"},
}


def small_config(**overrides):
    """SMALL as a Config; keyword overrides use dotted keys as in --set."""
    base = copy.deepcopy(SMALL)
    return load_config(base, [f"{k}={v}" for k, v in overrides.items()])


def stop_at(round_: int):
    """A progress callback that presses Ctrl-C once ``round_`` rounds are done (the run
    stops after that round, with a checkpoint when it has a directory)."""

    def progress(done, row):
        if done == round_:
            signal.raise_signal(signal.SIGINT)

    return progress


@pytest.fixture
def tiny():
    return small_config


LEARNING_METRICS = ("test_accuracy_mean", "test_loss_mean", "avg_model_loss", "consensus_distance")


def assert_same_learning(a, b) -> None:
    """Two runs learned identically: every evaluation bit for bit."""
    for key in LEARNING_METRICS:
        assert np.array_equal(a.metrics[key], b.metrics[key]), key
