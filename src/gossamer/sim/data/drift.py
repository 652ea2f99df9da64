"""Concept drift: when the learning task changes, for whom, and how.

The world goes through concepts C_0, C_1, ...: C_0 is the dataset as it is; drift
event e (e = 1, 2, ...) introduces concept C_e, and the nodes it affects switch to
it, while the others keep the concept they had. A node's concept is therefore the
index of the latest event that affected it. Two kinds of concept:

- ``label_permutation`` (a change of the target concept, as in Kamp et al. 2018):
  C_e relabels class k as pi_e(k), pi_e a seeded random permutation with no fixed
  point, so every class changes;
- ``input_rotation`` (covariate shift): for image inputs (C, H, W), C_e rotates every
  image by e x ``angle`` degrees (exact for multiples of 90, bilinear otherwise); for
  vector inputs, C_e applies a seeded random rotation (an orthogonal matrix) to the
  feature space.

Events happen at fixed rounds (``at_rounds``, counted from 1: the round that starts
under the new concept) and/or at random, each round from the second on with
probability ``probability`` (seeded). Each event affects all nodes, or a seeded
random ``fraction`` of them. The schedule is fixed at set-up from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gossamer.config import DriftConfig
from gossamer.sim.rng import Purpose, hash32, numpy_generator, uniform


@dataclass(frozen=True)
class DriftEvent:
    round: int  # counted from 1: the first round under the new concept
    concept: int  # e: the concept introduced
    nodes: np.ndarray  # (N,) bool: who switches to it


def drift_schedule(config: DriftConfig, nodes: int, rounds: int, seed: int) -> list[DriftEvent]:
    """All drift events of a run, in round order."""
    if config.kind == "none":
        return []
    at = set(config.at_rounds)
    if config.probability > 0:
        later = torch.arange(2, rounds + 1)
        draws = uniform(seed, Purpose.DRIFT, 0, later)
        at |= set(later[draws < config.probability].tolist())
    events = []
    for concept, round_ in enumerate(sorted(r for r in at if r <= rounds), start=1):
        if config.fraction >= 1.0:
            chosen = np.ones(nodes, dtype=bool)
        else:
            count = max(1, round(config.fraction * nodes))
            keys = hash32(seed, Purpose.DRIFT, 1, round_, torch.arange(nodes)).numpy()
            chosen = np.zeros(nodes, dtype=bool)
            chosen[np.argsort(keys, kind="stable")[:count]] = True
        events.append(DriftEvent(round_, concept, chosen))
    return events


class ConceptShift:
    """Applies concept C_c to inputs and labels; C_0 is the identity."""

    def __init__(
        self,
        config: DriftConfig,
        concepts: int,
        num_classes: int,
        input_shape: tuple[int, ...],
        seed: int,
        device: torch.device,
    ):
        self.kind = config.kind
        self.angle = config.angle
        self.input_shape = tuple(input_shape)
        self.permutations = torch.arange(num_classes).repeat(concepts, 1)  # (E+1, C)
        self.rotations: list[torch.Tensor | None] = [None] * concepts  # vectors: (D, D)
        for c in range(1, concepts):
            rng = numpy_generator(seed, Purpose.DRIFT, 2, c)
            if self.kind == "label_permutation":
                self.permutations[c] = torch.from_numpy(_derangement(num_classes, rng))
            elif len(self.input_shape) != 3:
                dim = math.prod(self.input_shape)
                q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
                q *= np.sign(np.diag(r))  # uniform (Haar) orthogonal matrix
                self.rotations[c] = torch.from_numpy(q.astype(np.float32)).to(device)
        self.permutations = self.permutations.to(device)
        self._test_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(
        self, x: torch.Tensor, y: torch.Tensor, concept: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-node batches under each node's concept: x (n, B, ...), y (n, B), concept (n,)."""
        if self.kind == "label_permutation":
            return x, self.permutations[concept[:, None], y]
        x = x.clone()
        for c in concept.unique().tolist():  # a few concepts, not a loop over nodes
            if c:
                rows = (concept == c).nonzero().squeeze(1)
                x[rows] = self._transform(x[rows].flatten(0, 1), c).view_as(x[rows])
        return x, y

    def apply_shared(
        self, x: torch.Tensor, y: torch.Tensor, concept: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One set of samples (e.g. the test set, or its evaluation subset) under
        concept c: x (T, ...), y (T,); cached by concept and by the set of samples."""
        if concept == 0:
            return x, y
        key = (concept, x.data_ptr(), len(x))
        if key not in self._test_cache:
            if self.kind == "label_permutation":
                self._test_cache[key] = (x, self.permutations[concept][y])
            else:
                self._test_cache[key] = (self._transform(x, concept), y)
        return self._test_cache[key]

    def _transform(self, x: torch.Tensor, concept: int) -> torch.Tensor:
        """Rotate a batch of inputs x (M, *input_shape) into concept c."""
        rotation = self.rotations[concept]
        if rotation is not None:
            return (x.flatten(1) @ rotation.T).view_as(x)
        degrees = (concept * self.angle) % 360
        if degrees % 90 == 0:
            return torch.rot90(x, int(degrees // 90), dims=(-2, -1))
        theta = math.radians(degrees)
        affine = torch.tensor(
            [[math.cos(theta), -math.sin(theta), 0.0], [math.sin(theta), math.cos(theta), 0.0]],
            dtype=x.dtype,
            device=x.device,
        ).expand(len(x), 2, 3)
        grid = F.affine_grid(affine, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(n) with no fixed point (every class moves)."""
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm
