"""Dataset sources; every one works offline from files the user has, or is built in.

Built in:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10
  classes; Alpaydin & Kaynak, UCI), pixel values 0..16 scaled to [0, 1], (1, 8, 8).
- ``synthetic``: a seeded Gaussian mixture of any size and input shape: each class
  owns ``clusters_per_class`` clusters whose means are drawn N(0, s^2 I) with s
  chosen so that two means lie ``separation`` noise standard deviations apart on
  average; samples add N(0, I) noise. Classes are balanced.
- ``mnist1d``: MNIST-1D (Greydanus 2020), generated procedurally by the ``mnist1d``
  package's own generator (no download); 40-sample signals, 10 classes; by default
  the benchmark's 5,000 samples with its seed 42.

From the user's files (``data.root``):

- ``mnist``, ``fashion_mnist``: the four standard IDX files (gzipped or not);
- ``cifar10``: the python batches (``cifar-10-batches-py``);
- ``femnist``: LEAF's JSON files, keeping each sample's writer;
- ``npz``: an ``.npz`` with x_train, y_train, x_test, y_test;
- ``folder``: an image folder tree, one sub-folder per class (train/ and test/
  sub-trees if present, else split by ``test_fraction``).

Images are stored once on the device as uint8 and normalized on the fly per channel
(see :data:`NORMALIZATION`); splits made here are stratified and seeded.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from gossamer.config import DATASETS, ConfigError, DataConfig
from gossamer.sim.data import fields, files
from gossamer.sim.rng import Purpose, numpy_generator

#: Per-channel (mean, std) applied after scaling uint8 images to [0, 1]; the usual
#: training-set statistics (MNIST: PyTorch's example values; CIFAR-10: the training
#: set's channel statistics). FEMNIST is used as LEAF provides it, in [0, 1].
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "femnist": ((0.0,), (1.0,)),
}
SHAPES = {
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "femnist": ((1, 28, 28), 62),
}


@dataclass(frozen=True)
class Dataset:
    """Train and test tensors of one classification task.

    ``x_train`` is stored as loaded (uint8 images, or float32); :meth:`prepare` turns
    a gathered batch into normalized float32. ``x_test`` is stored prepared.
    """

    name: str
    x_train: torch.Tensor  # (M, *input_shape) uint8 or float32
    y_train: torch.Tensor  # (M,) int64
    x_test: torch.Tensor  # (T, *input_shape) float32, prepared
    y_test: torch.Tensor  # (T,) int64
    num_classes: int
    mean: torch.Tensor | None = None  # (C, 1, 1) or scalar; None: x_train is float already
    std: torch.Tensor | None = None
    writers: np.ndarray | None = field(default=None, compare=False)  # (M,) writer of each sample

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Raw samples (..., *input_shape) -> normalized float32."""
        if x.dtype != torch.uint8:
            return x
        return (x.float().div_(255.0) - self.mean).div_(self.std)

    def to(self, device: torch.device | str) -> Dataset:
        move = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        stats = {
            k: None if getattr(self, k) is None else getattr(self, k).to(device)
            for k in ("mean", "std")
        }
        return Dataset(
            name=self.name, num_classes=self.num_classes, writers=self.writers, **move, **stats
        )


@dataclass(frozen=True)
class Arrays:
    """What a dataset source reads or generates: numpy arrays, split into train and test."""

    x_train: np.ndarray  # (M, *input_shape) uint8 images or float32
    y_train: np.ndarray  # (M,) int
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    writers: np.ndarray | None = None  # (M,) writer of each training sample


@dataclass(frozen=True)
class DatasetSource:
    """A registered dataset: how to load it and what is known about it without loading.

    Attributes:
        load: ``load(config, seed) -> Arrays``.
        shape: (input shape, classes) from the config alone, or None when only the
            files tell (npz, folder).
        reads_files: the data come from ``data.root`` (or a download).
        downloadable: ``data.download: true`` fetches the standard files.
        has_writers: samples carry their writer, for ``partition: natural``.
        description: one line for ``gossamer list``.
        seeded: the seed generates or splits the data (it is part of the sharing key).
        options: the ``data`` sub-section that configures it (e.g. "synthetic"), if any.
        train_samples: ``train_samples(config)``, the training samples the config
            implies, for a dataset of fixed size (the config then refuses more nodes
            than samples before anything is built: ``gossamer.config.work``).
    """

    name: str
    load: Callable[[DataConfig, int], Arrays]
    description: str = ""
    shape: Callable[[DataConfig], tuple[tuple[int, ...], int]] | None = None
    reads_files: bool = False
    downloadable: bool = False
    has_writers: bool = False
    seeded: bool = False
    options: str | None = None
    train_samples: Callable[[DataConfig], int | None] | None = None

    def input_shape(self, config: DataConfig) -> tuple[int, ...] | None:
        """The input shape known from the config, or None (only the files tell)."""
        return self.shape(config)[0] if self.shape is not None else None


def register_dataset(name: str, **traits: Any) -> Callable:
    """Decorator for a loader ``load(config, seed) -> Arrays``: ``data.dataset: <name>``
    loads with it. ``traits`` are :class:`DatasetSource`'s other attributes."""

    def decorate(load: Callable[[DataConfig, int], Arrays]) -> Callable:
        DATASETS.register(name, None, DatasetSource(name, load, **traits))
        return load

    return decorate


def source(config: DataConfig) -> DatasetSource:
    return DATASETS.implementation(config.dataset)


def dataset_info(config: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of the configured dataset, without loading it
    where the config tells (built-in and standard formats)."""
    found = source(config)
    if found.shape is not None:
        return found.shape(config)
    loaded = load_dataset(config, seed=0)  # npz, folder: the files say
    return loaded.input_shape, loaded.num_classes


def dataset_key(config: DataConfig, seed: int) -> str:
    """What :func:`load_dataset` depends on, as a string: runs with equal keys load equal
    data (the partition, batch size, stream and drift settings are not in it)."""
    found = source(config)
    fields = ["dataset", "root", "download", "download_url", "image_size", "test_fraction"]
    if found.options is not None:
        fields.append(found.options)
    return json.dumps(
        [config.model_dump(mode="json", include=set(fields)), seed if found.seeded else None],
        sort_keys=True,
    )


def load_dataset(config: DataConfig, seed: int) -> Dataset:
    """Load (or generate) the configured dataset, split into train and test."""
    found = source(config)
    arrays = found.load(config, seed)
    _check_arrays(arrays, config)
    x_tr, x_te = arrays.x_train, arrays.x_test
    mean = std = None
    if x_tr.dtype == np.uint8:
        mean, std = _normalization(found.name, x_tr)
    dataset = Dataset(
        name=found.name,
        x_train=torch.from_numpy(np.require(x_tr, requirements=["C", "W"])),
        y_train=torch.from_numpy(np.asarray(arrays.y_train, dtype=np.int64)),
        x_test=torch.from_numpy(np.require(x_te, requirements=["C", "W"])),
        y_test=torch.from_numpy(np.asarray(arrays.y_test, dtype=np.int64)),
        num_classes=arrays.num_classes,
        mean=mean,
        std=std,
        writers=arrays.writers,
    )
    return Dataset(**{**dataset.__dict__, "x_test": dataset.prepare(dataset.x_test)})


def _root(config: DataConfig):
    """The folder (or file) with the dataset; downloads into the cache if asked."""
    if config.download:
        folder = config.root or files.default_cache() / config.dataset
        files.download(config.dataset, folder, config.download_url)
        return folder
    return config.root


def _split(x, y, test_fraction, seed):
    from sklearn.model_selection import train_test_split  # slow to import: when used

    split_seed = int(numpy_generator(seed, Purpose.DATA, 1).integers(2**31))
    try:
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=test_fraction, stratify=y, random_state=split_seed
        )
    except ValueError as error:  # e.g. fewer test samples than classes
        raise ConfigError(
            f"data.test_fraction: a stratified split of {len(y)} samples with "
            f"{len(np.unique(y))} classes is impossible at {test_fraction}: {error}"
        ) from None
    return x_tr, y_tr, x_te, y_te


def _check_arrays(arrays: Arrays, config: DataConfig) -> None:
    """What any source loaded (built in, from files, or a plugin's) is usable (see
    :func:`fields.check_splits`). The readers of files check each file first, naming
    it; this names the dataset."""
    where = f"data.dataset {config.dataset!r}"
    if config.root is not None:
        where += f" (data.root '{config.root}')"
    x_train, x_test = np.asarray(arrays.x_train), np.asarray(arrays.x_test)
    fields.check_splits(where, x_train, arrays.y_train, x_test, arrays.y_test, arrays.num_classes)


def _normalization(name: str, x_train: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, std) for uint8 data: the standard values, else the train set's."""
    if name in NORMALIZATION:
        mean, std = (np.asarray(v, dtype=np.float32) for v in NORMALIZATION[name])
    else:  # npz / folder: statistics of the training set, per channel for images
        scaled = x_train.astype(np.float32) / 255.0
        axes = (0, *range(2, scaled.ndim)) if scaled.ndim == 4 else None
        mean = np.atleast_1d(scaled.mean(axis=axes)).astype(np.float32)
        std = np.atleast_1d(scaled.std(axis=axes)).astype(np.float32).clip(min=1e-6)
    shape = (-1, 1, 1) if x_train.ndim == 4 else (-1,) if x_train.ndim == 2 else (-1,)
    if x_train.ndim != 4 and len(mean) == 1:
        shape = ()
    return torch.from_numpy(mean).reshape(shape), torch.from_numpy(std).reshape(shape)


@register_dataset(
    "digits",
    description="scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), built in",
    shape=lambda config: ((1, 8, 8), 10),
    seeded=True,
    # _split tests ceil(test_fraction x 1,797) of the 1,797 (as train_test_split does)
    train_samples=lambda config: 1797 - math.ceil(config.test_fraction * 1797),
)
def _digits(config: DataConfig, seed: int) -> Arrays:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return _split_arrays(x, bunch.target.astype(np.int64), config, seed)


@register_dataset(
    "synthetic",
    description="a seeded Gaussian mixture of any size and input shape, built in",
    shape=lambda config: (tuple(config.synthetic.shape), config.synthetic.classes),
    seeded=True,
    options="synthetic",
)
def _synthetic(config: DataConfig, seed: int) -> Arrays:
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
    x, labels = x.reshape(spec.samples, *spec.shape), labels.astype(np.int64)
    return _split_arrays(x, labels, config, seed, classes=spec.classes)


@register_dataset(
    "mnist1d",
    description="MNIST-1D (Greydanus 2020) from its package's generator, built in",
    shape=lambda config: ((40,), 10),
    seeded=True,
    options="mnist1d",
)
def _mnist1d(config: DataConfig, seed: int) -> Arrays:
    """The mnist1d package's generator, with the global RNG state it uses restored."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ConfigError(f"data.dataset: 'mnist1d' needs the mnist1d package ({error})") from None
    args = get_dataset_args()
    args.num_samples = config.mnist1d.samples
    args.seed = config.mnist1d.seed
    args.train_split = 1.0  # gossamer splits (stratified, seeded) like every dataset
    saved = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(saved[0])
        random.setstate(saved[1])
    x, y = generated["x"].astype(np.float32), generated["y"].astype(np.int64)
    return _split_arrays(x, y, config, seed)


def _split_arrays(x, y, config: DataConfig, seed: int, classes: int | None = None) -> Arrays:
    """Generated data, split stratified and seeded; classes default to the labels seen."""
    x_tr, y_tr, x_te, y_te = _split(x, y, config.test_fraction, seed)
    return Arrays(x_tr, y_tr, x_te, y_te, classes if classes is not None else int(y.max()) + 1)


# ------------------------------------------------------------------ from the user's files


def _standard(name: str) -> Callable:
    return lambda config: SHAPES[name]


@register_dataset(
    "mnist",
    description="MNIST from its four IDX files (or a verified download)",
    shape=_standard("mnist"),
    reads_files=True,
    downloadable=True,
)
def _mnist(config: DataConfig, seed: int) -> Arrays:
    classes = SHAPES["mnist"][1]
    return Arrays(*files.load_idx_dataset(_root(config), "mnist", classes), classes)


@register_dataset(
    "fashion_mnist",
    description="Fashion-MNIST from its four IDX files (or a verified download)",
    shape=_standard("fashion_mnist"),
    reads_files=True,
    downloadable=True,
)
def _fashion_mnist(config: DataConfig, seed: int) -> Arrays:
    classes = SHAPES["fashion_mnist"][1]
    return Arrays(*files.load_idx_dataset(_root(config), "fashion_mnist", classes), classes)


@register_dataset(
    "cifar10",
    description="CIFAR-10 from its python batches (or a verified download)",
    shape=_standard("cifar10"),
    reads_files=True,
    downloadable=True,
)
def _cifar10(config: DataConfig, seed: int) -> Arrays:
    classes = SHAPES["cifar10"][1]
    return Arrays(*files.load_cifar10(_root(config), classes), classes)


@register_dataset(
    "femnist",
    description="LEAF's FEMNIST JSON files, with each sample's writer",
    shape=_standard("femnist"),
    reads_files=True,
    has_writers=True,
)
def _femnist(config: DataConfig, seed: int) -> Arrays:
    classes = SHAPES["femnist"][1]
    x_tr, y_tr, x_te, y_te, writers = files.load_leaf(_root(config), classes)
    return Arrays(x_tr, y_tr, x_te, y_te, classes, writers)


@register_dataset(
    "npz", description="an .npz file with x_train, y_train, x_test, y_test", reads_files=True
)
def _npz(config: DataConfig, seed: int) -> Arrays:
    x_tr, y_tr, x_te, y_te = files.load_npz(_root(config))
    return Arrays(x_tr, y_tr, x_te, y_te, _classes_seen(y_tr, y_te))


@register_dataset(
    "folder",
    description="an image folder tree, one sub-folder per class",
    reads_files=True,
    seeded=True,
)
def _folder(config: DataConfig, seed: int) -> Arrays:
    size = tuple(config.image_size) if config.image_size else None
    x_tr, y_tr, x_te, y_te, _ = files.load_folder(_root(config), size)
    if x_te is None:
        x_tr, y_tr, x_te, y_te = _split(x_tr, y_tr, config.test_fraction, seed)
    return Arrays(x_tr, y_tr, x_te, y_te, _classes_seen(y_tr, y_te))


def _classes_seen(y_train: np.ndarray, y_test: np.ndarray) -> int:
    return int(max(y_train.max(), y_test.max())) + 1
