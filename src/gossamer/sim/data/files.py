"""Readers of the standard on-disk dataset formats, and verified downloads.

Every reader names the file and the problem when a file is missing, truncated or
malformed, and the field when one holds the wrong type or values out of range
(labels outside the classes, pixels outside 0..255, NaN or infinite inputs, no
samples). Nothing read executes code: pickles (CIFAR-10) are read by an unpickler
that refuses every class but numpy's arrays, .npz files without pickle. Downloads
go to a temporary name and are renamed into place only after their checksum matched,
so the cache never holds a half-written file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gossamer.config import DataError
from gossamer.sim.data import fields

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name in the cache
    url: str
    md5: str


#: The standard public files (checksums as published and used by torchvision).
MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
REMOTE = {
    "mnist": [
        RemoteFile("train-images-idx3-ubyte.gz", MNIST_URL, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        RemoteFile("train-labels-idx1-ubyte.gz", MNIST_URL, "d53e105ee54ea40749a09fcbcd1e9432"),
        RemoteFile("t10k-images-idx3-ubyte.gz", MNIST_URL, "9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", MNIST_URL, "ec29112dd5afa0611ce80d1b7f02629c"),
    ],
    "fashion_mnist": [
        RemoteFile("train-images-idx3-ubyte.gz", FASHION_URL, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile("train-labels-idx1-ubyte.gz", FASHION_URL, "25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile("t10k-images-idx3-ubyte.gz", FASHION_URL, "bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile("t10k-labels-idx1-ubyte.gz", FASHION_URL, "bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    "cifar10": [
        RemoteFile(
            "cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/",
            "c58f30108f718f92721af3b95e74349a",
        )
    ],
}
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
)


# ------------------------------------------------------------------ IDX (MNIST family)


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (LeCun's MNIST format), gzipped or not."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"'{path}': cannot read: {error}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(f"'{path}': not an IDX file (bad magic number)")
    dims = data[3]
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"'{path}': truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DataError(
            f"'{path}': truncated or padded: the header promises {expected} bytes of data "
            f"for shape {shape}; the file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def find_idx_files(root: Path, dataset: str) -> dict[str, Path]:
    """The four IDX files under root (or root/<Name>/raw, torchvision's layout)."""
    subdir = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[dataset]
    found = {}
    for name in IDX_FILES:
        for folder in (root, root / subdir / "raw", root / subdir):
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    found[name] = candidate
                    break
            if name in found:
                break
    missing = [n for n in IDX_FILES if n not in found]
    if missing:
        raise DataError(
            f"data.root '{root}': missing {', '.join(missing)} (gzipped or not) for "
            f"{dataset}. Put the four standard IDX files ({', '.join(IDX_FILES)}, .gz "
            f"allowed) in that folder, or set data.download: true"
        )
    return found


def load_idx_dataset(root: Path, dataset: str, classes: int = 10):
    """The four IDX files: (N, 1, 28, 28) uint8 images and their labels, checked."""
    files = find_idx_files(root, dataset)
    arrays = []
    for image_name, label_name in (IDX_FILES[:2], IDX_FILES[2:]):
        images, labels = read_idx(files[image_name]), read_idx(files[label_name])
        where = f"'{files[image_name]}'"
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(
                f"{where}: expected uint8 images of shape (N, 28, 28) (IDX type 0x08); got "
                f"{fields.describe(images)}"
            )
        fields.check_samples(where, "the file", len(images))
        if len(images) != len(labels):
            raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
        labels = fields.labels_field(f"'{files[label_name]}'", "the labels", labels, classes)
        arrays += [images[:, None], labels]
    return tuple(arrays)


# ------------------------------------------------------------------ CIFAR-10 python batches


def load_cifar10(root: Path, classes: int = 10):
    folder = root / "cifar-10-batches-py"
    if not folder.is_dir() and (root / "data_batch_1").is_file():
        folder = root
    missing = [n for n in CIFAR_FILES if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"data.root '{root}': missing {', '.join(missing)}. Put the standard CIFAR-10 "
            "python batches (the folder cifar-10-batches-py from cifar-10-python.tar.gz) "
            "in that folder, or set data.download: true"
        )
    parts = [_read_cifar_batch(folder / n, classes) for n in CIFAR_FILES]
    x_train = np.concatenate([p[0] for p in parts[:5]])
    y_train = np.concatenate([p[1] for p in parts[:5]])
    return x_train, y_train, parts[5][0], parts[5][1]


class _BatchData(pickle.Unpickler):
    """Unpickles what CIFAR-10's python batches hold (dicts, lists, bytes, strings,
    numbers and numpy arrays, rebuilt by numpy's own reconstructors) and refuses every
    other class, so a crafted file cannot run code when it is loaded."""

    ALLOWED = frozenset(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    ) | {("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refers to the Python object {module}.{name}, which a CIFAR-10 batch does not hold"
        )


def _read_cifar_batch(path: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = _BatchData(handle, encoding="bytes").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        KeyError,
        IndexError,
        MemoryError,
    ) as error:
        raise DataError(f"'{path}': not a readable CIFAR-10 batch: {error}") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"'{path}': expected a pickled dict with b'data' and b'labels'")
    data = fields.pixels_field(f"'{path}'", "b'data'", batch[b"data"])
    labels = fields.labels_field(f"'{path}'", "b'labels'", batch[b"labels"], classes)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(
            f"'{path}': expected data of shape (N, 3072) and N labels; got {data.shape} "
            f"and {len(labels)}"
        )
    fields.check_samples(f"'{path}'", "b'data'", len(data))
    return data.reshape(-1, 3, 32, 32), labels


# ------------------------------------------------------------------ LEAF FEMNIST


def load_leaf(root: Path, classes: int = 62):
    """LEAF's JSON format: train/ and test/ folders of {users, num_samples, user_data}.

    Returns images (N, 1, 28, 28) as uint8 (LEAF stores k/255 values), labels and
    the writer index of every sample (writers are numbered in sorted name order).
    """
    splits = {}
    for split in ("train", "test"):
        folder = root / split
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if not files:
            raise DataError(
                f"data.root '{root}': no {split}/*.json files. Point data.root at LEAF's "
                "femnist data folder (the one holding train/ and test/ made by LEAF's "
                "preprocess.sh), e.g. leaf/data/femnist/data"
            )
        xs, ys, users = [], [], []
        for path in files:
            try:
                content = json.loads(path.read_text(encoding="utf-8"))
                for user in content["users"]:
                    record = content["user_data"][user]
                    x, y = fields.leaf_record(f"'{path}', user {user!r}", record, classes)
                    xs.append(x)
                    ys.append(y)
                    users += [user] * len(y)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                raise DataError(
                    f"'{path}': not a LEAF JSON file (users, num_samples, user_data): {error}"
                ) from None
            except RecursionError:
                raise DataError(
                    f"'{path}': not a LEAF JSON file: its JSON is nested too deeply"
                ) from None
        fields.check_samples(f"data.root '{root}'", f"{split}/*.json", sum(len(y) for y in ys))
        x = np.concatenate(xs)
        splits[split] = (
            np.round(x * 255).astype(np.uint8).reshape(-1, 1, 28, 28),
            np.concatenate(ys),
            np.asarray(users),
        )
    names = sorted(set(splits["train"][2]))
    writer = np.searchsorted(names, splits["train"][2])
    (x_train, y_train, _), (x_test, y_test, _) = splits["train"], splits["test"]
    return x_train, y_train, x_test, y_test, writer


# ------------------------------------------------------------------ npz and image folders


NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: Path):
    """An .npz of x_train, y_train, x_test, y_test (no pickled objects), checked."""
    if not path.is_file():
        raise DataError(f"data.root '{path}': expected an .npz file; not found")
    unreadable = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise DataError(
            f"'{path}': not a readable .npz file (truncated, or not a zip of .npy arrays): "
            f"{type(error).__name__}: {error}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(
            f"'{path}': expected an .npz file of named arrays; got one {fields.describe(archive)}"
        )
    with archive:
        missing = [k for k in NPZ_ARRAYS if k not in archive]
        if missing:
            raise DataError(
                f"'{path}': missing array(s) {', '.join(missing)}; expected x_train, "
                f"y_train, x_test, y_test; got {', '.join(archive.files)}"
            )
        arrays = {}
        for name in NPZ_ARRAYS:
            try:
                arrays[name] = archive[name]
            except unreadable as error:
                raise DataError(
                    f"'{path}': array {name} cannot be read (truncated or damaged): "
                    f"{type(error).__name__}: {error}"
                ) from None
    x_train, y_train, x_test, y_test = (arrays[k] for k in NPZ_ARRAYS)
    where = f"'{path}'"
    y_train, y_test = fields.check_splits(where, x_train, y_train, x_test, y_test)
    if x_train.dtype != np.uint8:
        with np.errstate(over="ignore"):  # reported just below
            x_train, x_test = x_train.astype(np.float32), x_test.astype(np.float32)
        fields.check_finite(where, "x_train (as float32)", x_train)  # e.g. 1e39 overflows
        fields.check_finite(where, "x_test (as float32)", x_test)
    return x_train, y_train, x_test, y_test


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_folder(root: Path, image_size: tuple[int, int] | None):
    """root/<class>/*.png (classes in sorted order); root/train and root/test if present.

    Returns the train and test arrays and the class names. Without train/ and test/
    sub-folders, every image is in the "train" arrays (the caller splits them).
    """
    if not root.is_dir():
        raise DataError(f"data.root '{root}': expected a folder of class sub-folders")
    split_roots = [root / "train", root / "test"]
    if all(p.is_dir() for p in split_roots):
        train, classes = _read_class_folders(split_roots[0], image_size, None)
        test, _ = _read_class_folders(split_roots[1], image_size, classes)
        return (*train, *test, classes)
    (x, y), classes = _read_class_folders(root, image_size, None)
    return x, y, None, None, classes


def _read_class_folders(root: Path, image_size, classes):
    from PIL import Image, UnidentifiedImageError

    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = [p.name for p in folders]
    if classes is None:
        classes = names
    elif names != classes:
        raise DataError(f"'{root}': class folders {names} differ from the training ones {classes}")
    if not folders:
        raise DataError(f"'{root}': no class sub-folders")
    images, labels, size, mode = [], [], image_size, None
    for label, folder in enumerate(folders):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as image:
                    image = image.convert("RGB" if image.mode not in ("L", "1") else "L")
                    mode = mode or image.mode
                    image = image.convert(mode)
                    if size is None:
                        size = (image.height, image.width)
                    if (image.height, image.width) != tuple(size):
                        if image_size is None:
                            raise DataError(
                                f"'{path}': image is {image.height}x{image.width} but earlier "
                                f"ones are {size[0]}x{size[1]}; set data.image_size to resize"
                            )
                        image = image.resize((size[1], size[0]))
                    array = np.asarray(image, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as error:
                raise DataError(f"'{path}': not a readable image: {error}") from None
            images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"'{root}': no images in its class folders")
    return (np.stack(images), np.asarray(labels, dtype=np.int64)), classes


# ------------------------------------------------------------------ downloads


def default_cache() -> Path:
    return Path(os.environ.get("GOSSAMER_CACHE", Path.home() / ".cache" / "gossamer"))


def download(dataset: str, folder: Path, base_url: str | None = None) -> None:
    """Fetch the standard files of a dataset into folder, verified by MD5.

    Each file is downloaded to a temporary name in the same folder and renamed into
    place only if its checksum matches; archives are extracted the same way.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for remote in REMOTE[dataset]:
        target = folder / remote.name
        if not (target.is_file() and md5(target) == remote.md5):
            _fetch(f"{base_url or remote.url}{remote.name}", target, remote.md5, dataset, folder)
        if remote.name.endswith(".tar.gz") and not (folder / "cifar-10-batches-py").is_dir():
            _extract(target, folder)


def _fetch(url: str, target: Path, expected: str, dataset: str, folder: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            shutil.copyfileobj(response, out)
        got = md5(Path(tmp))
        if got != expected:
            raise DataError(
                f"download of {url}: checksum mismatch (md5 {got}, expected {expected}); "
                "nothing was cached"
            )
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        names = ", ".join(r.name for r in REMOTE[dataset])
        raise DataError(
            f"data.download: cannot fetch {url} ({error}). Without network, put {names} "
            f"in '{folder}' (and set data.root to it)"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _extract(archive: Path, folder: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=folder, prefix=".extract."))
    try:
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():  # refuse paths that escape the folder
                if member.name.startswith(("/", "\\")) or ".." in Path(member.name).parts:
                    raise DataError(f"'{archive}': unsafe path {member.name!r} in archive")
            try:
                tar.extractall(staging, filter="data")
            except TypeError:  # Python < 3.10.12 / 3.11.4: no filters; members checked above
                tar.extractall(staging)  # noqa: S202
        for item in staging.iterdir():
            os.replace(item, folder / item.name)
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"'{archive}': cannot extract: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
