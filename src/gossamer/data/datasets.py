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
import random
from dataclasses import dataclass, field

import numpy as np
import torch

from gossamer.config import ConfigError, DataConfig
from gossamer.data import files
from gossamer.rng import Purpose, numpy_generator

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


def dataset_info(config: DataConfig) -> tuple[tuple[int, ...], int]:
    """(input shape, number of classes) of the configured dataset, without loading it
    where the shape is known (built-in and standard formats)."""
    name = config.dataset
    if name == "digits":
        return (1, 8, 8), 10
    if name == "synthetic":
        return tuple(config.synthetic.shape), config.synthetic.classes
    if name == "mnist1d":
        return (40,), 10
    if name in SHAPES:
        return SHAPES[name]
    loaded = load_dataset(config, seed=0)  # npz, folder: the files say
    return loaded.input_shape, loaded.num_classes


def dataset_key(config: DataConfig, seed: int) -> str:
    """What :func:`load_dataset` depends on, as a string: runs with equal keys load equal
    data (the partition, batch size, stream and drift settings are not in it)."""
    fields = ["dataset", "root", "download", "download_url", "image_size", "test_fraction"]
    if config.dataset in ("synthetic", "mnist1d"):
        fields.append(config.dataset)
    used_seed = config.dataset in ("digits", "synthetic", "mnist1d", "folder")
    return json.dumps(
        [config.model_dump(mode="json", include=set(fields)), seed if used_seed else None],
        sort_keys=True,
    )


def load_dataset(config: DataConfig, seed: int) -> Dataset:
    """Load (or generate) the configured dataset, split into train and test."""
    name = config.dataset
    writers = None
    if name in ("digits", "synthetic", "mnist1d"):
        x, y = {"digits": _digits, "synthetic": _synthetic, "mnist1d": _mnist1d}[name](config, seed)
        x_tr, y_tr, x_te, y_te = _split(x, y, config.test_fraction, seed)
        classes = int(y.max()) + 1 if name != "synthetic" else config.synthetic.classes
    else:
        root = _root(config)
        if name in ("mnist", "fashion_mnist"):
            x_tr, y_tr, x_te, y_te = files.load_idx_dataset(root, name)
        elif name == "cifar10":
            x_tr, y_tr, x_te, y_te = files.load_cifar10(root)
        elif name == "femnist":
            x_tr, y_tr, x_te, y_te, writers = files.load_leaf(root)
        elif name == "npz":
            x_tr, y_tr, x_te, y_te = files.load_npz(root)
        else:
            size = tuple(config.image_size) if config.image_size else None
            x_tr, y_tr, x_te, y_te, _ = files.load_folder(root, size)
            if x_te is None:
                x_tr, y_tr, x_te, y_te = _split(x_tr, y_tr, config.test_fraction, seed)
        classes = SHAPES[name][1] if name in SHAPES else int(max(y_tr.max(), y_te.max())) + 1
        _check_labels(y_tr, y_te, classes, name)
    mean = std = None
    if x_tr.dtype == np.uint8:
        mean, std = _normalization(name, x_tr)
    dataset = Dataset(
        name=name,
        x_train=torch.from_numpy(np.require(x_tr, requirements=["C", "W"])),
        y_train=torch.from_numpy(np.asarray(y_tr, dtype=np.int64)),
        x_test=torch.from_numpy(np.require(x_te, requirements=["C", "W"])),
        y_test=torch.from_numpy(np.asarray(y_te, dtype=np.int64)),
        num_classes=classes,
        mean=mean,
        std=std,
        writers=writers,
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


def _check_labels(y_train, y_test, classes, name):
    top = int(max(y_train.max(initial=0), y_test.max(initial=0)))
    if top >= classes or min(y_train.min(initial=0), y_test.min(initial=0)) < 0:
        raise files.DataFileError(
            f"data.dataset {name!r}: labels must lie in 0..{classes - 1}; got up to {top}"
        )


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


def _digits(config: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
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


def _mnist1d(config: DataConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
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
    return generated["x"].astype(np.float32), generated["y"].astype(np.int64)
