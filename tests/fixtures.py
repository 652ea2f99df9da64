"""Tiny dataset files in the real on-disk formats, written by the tests."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """LeCun's IDX format: 0, 0, type code 0x08 (uint8), ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def mnist_like(root: Path, train: int = 40, test: int = 20, gz: bool = True, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(test) % 10).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    paths = {name: write_idx(root / name, a, gz) for name, a in arrays.items()}
    return arrays, paths


def cifar10(root: Path, per_batch: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, per_batch))
        batches[name] = (data, labels)
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
    return batches


def leaf(root: Path, writers: dict[str, int], test_per_writer: int = 2, seed: int = 0):
    """LEAF JSON: train/ and test/ folders; writer name -> number of train samples."""
    rng = np.random.default_rng(seed)
    truth = {}
    for split, sizes in (("train", writers), ("test", dict.fromkeys(writers, test_per_writer))):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        users = list(sizes)
        data = {}
        for user in users:
            x = rng.integers(0, 256, (sizes[user], 784)) / 255.0
            y = rng.integers(0, 62, sizes[user])
            data[user] = {"x": x.tolist(), "y": y.tolist()}
            truth[(split, user)] = (x, y)
        half = len(users) // 2 or 1  # two files, as LEAF writes several
        for k, chunk in enumerate((users[:half], users[half:])):
            if chunk:
                content = {
                    "users": chunk,
                    "num_samples": [sizes[u] for u in chunk],
                    "user_data": {u: data[u] for u in chunk},
                }
                (folder / f"part_{k}.json").write_text(json.dumps(content))
    return truth


def image_folder(
    root: Path, classes=("cat", "dog"), per_class: int = 3, size=(6, 5), mode: str = "RGB"
):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                shape = (*size, 3) if mode == "RGB" else size
                array = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(array, mode=mode).save(folder / f"{k}.png")
