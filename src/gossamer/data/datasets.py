"""Built-in dataset sources; every one works offline.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes;
  Alpaydin & Kaynak, UCI), pixel values 0..16 scaled to [0, 1], shape (1, 8, 8).
- ``synthetic``: a seeded Gaussian mixture of any size and input shape: each class owns
  ``clusters_per_class`` clusters whose means are drawn N(0, s^2 I) with s chosen so
  that two means lie ``separation`` noise standard deviations apart on average; samples
  add N(0, I) noise. Classes are balanced.

The train/test split is stratified by label and seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from gossamer.config import DataConfig
from gossamer.rng import Purpose, numpy_generator


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors of one classification task."""

    name: str
    x_train: torch.Tensor  # (M, *input_shape) float32
    y_train: torch.Tensor  # (M,) int64
    x_test: torch.Tensor  # (T, *input_shape) float32
    y_test: torch.Tensor  # (T,) int64
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset(name=self.name, num_classes=self.num_classes, **move)


def dataset_info(config: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of the configured dataset, without loading it."""
    if config.dataset == "digits":
        return (1, 8, 8), 10
    return tuple(config.synthetic.shape), config.synthetic.classes


def load_dataset(config: DataConfig, seed: int) -> Dataset:
    """Load (or generate) the configured dataset and split it into train and test."""
    if config.dataset == "digits":
        x, y = _digits()
        classes = 10
    else:
        x, y = _synthetic(config, seed)
        classes = config.synthetic.classes
    split_seed = int(numpy_generator(seed, Purpose.DATA, 1).integers(2**31))
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=config.test_fraction, stratify=y, random_state=split_seed
    )
    return Dataset(
        name=config.dataset,
        x_train=torch.from_numpy(np.ascontiguousarray(x_tr)),
        y_train=torch.from_numpy(y_tr.astype(np.int64)),
        x_test=torch.from_numpy(np.ascontiguousarray(x_te)),
        y_test=torch.from_numpy(y_te.astype(np.int64)),
        num_classes=classes,
    )


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, bunch.target.astype(np.int64)


def _synthetic(config: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    spec = config.synthetic
    rng = numpy_generator(seed, Purpose.DATA, 0)
    dim = int(np.prod(spec.shape))
    clusters = spec.classes * spec.clusters_per_class
    scale = spec.separation / np.sqrt(2.0 * dim)
    means = rng.standard_normal((clusters, dim), dtype=np.float32) * np.float32(scale)
    labels = rng.permutation(np.arange(spec.samples) % spec.classes)
    cluster = labels + spec.classes * rng.integers(spec.clusters_per_class, size=spec.samples)
    x = rng.standard_normal((spec.samples, dim), dtype=np.float32)
    x += means[cluster]
    return x.reshape(spec.samples, *spec.shape), labels.astype(np.int64)
