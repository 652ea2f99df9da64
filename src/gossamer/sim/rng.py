"""Counter-based randomness: every random number is a hash of its coordinates.

A draw is a pure function of ``(seed, purpose, node, counter...)``, so results do not
depend on how nodes are batched, chunked, sharded or resumed, and no generator state
has to be checkpointed. The hash is Thomas Mueller's 32-bit integer finalizer
(``x ^= x >> 16; x *= 0x45d9f3b`` twice, then ``x ^= x >> 16``), computed in int64
with every product below 2**59, so it is exact and identical on every device.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import torch

_MASK32 = 0xFFFFFFFF
_MULT = 0x45D9F3B


class Purpose(IntEnum):
    """What a random draw is for; part of every hash so streams never collide."""

    INIT = 1
    DATA = 2
    PARTITION = 3
    TOPOLOGY = 4
    BATCH_ORDER = 5
    BATCH_REPLACEMENT = 6
    PROTOCOL = 7
    DRIFT = 8
    ENERGY = 9
    AUGMENT = 10
    AVAILABILITY = 11
    DELIVERY = 12
    EVALUATION = 13
    COMPRESSION = 14


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = (((x >> 16) ^ x) * _MULT) & _MASK32
    x = (((x >> 16) ^ x) * _MULT) & _MASK32
    return (x >> 16) ^ x


def hash32(seed: int, purpose: int, *keys: torch.Tensor | int) -> torch.Tensor:
    """32-bit hash of integer coordinates, broadcast over tensor keys.

    Args:
        seed, purpose: scalars that select the stream.
        keys: int64 tensors (broadcastable) or ints; each is reduced mod 2**32.
    Returns:
        int64 tensor with values in [0, 2**32).
    """
    device = next((k.device for k in keys if isinstance(k, torch.Tensor)), None)
    h = _mix(torch.tensor((seed & _MASK32) ^ 0x9E3779B9, dtype=torch.int64, device=device))
    h = _mix(h ^ (int(purpose) & _MASK32))
    for key in keys:
        h = _mix(h ^ (torch.as_tensor(key, dtype=torch.int64, device=device) & _MASK32))
    return h


def uniform(seed: int, purpose: int, *keys: torch.Tensor | int) -> torch.Tensor:
    """Uniform float64 numbers in [0, 1), one per broadcast coordinate."""
    return hash32(seed, purpose, *keys).to(torch.float64) / 2.0**32


def numpy_generator(seed: int, purpose: int, *keys: int) -> np.random.Generator:
    """A numpy Generator for one-shot set-up work (partitions, graphs, synthetic data)."""
    return np.random.default_rng([seed, int(purpose), *keys])


def torch_generator(seed: int, purpose: int, *keys: int) -> torch.Generator:
    """A CPU torch Generator for one-shot set-up work (model initialization)."""
    value = int(hash32(seed, purpose, *keys)) if keys else int(hash32(seed, purpose))
    return torch.Generator().manual_seed(value)
