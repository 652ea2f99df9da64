"""Shared fixtures: small configs that run in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gossamer.config import load_config

torch.set_num_threads(2)

ROOT = Path(__file__).parents[1]


def small_config(**overrides):
    """A tiny synthetic experiment; keyword overrides use dotted keys as in --set."""
    base = {
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
    return load_config(base, [f"{k}={v}" for k, v in overrides.items()])


@pytest.fixture
def tiny():
    return small_config
