"""Damaged data files: each refused with a DataError naming the file and the field.

Every case is built from a tiny file in the real format (tests/fixtures.py), then
broken the way files break: a field of the wrong type, values out of range, NaN,
an empty split, a truncated archive.
"""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest

import gossamer
from conftest import SMALL
from fixtures import cifar10, leaf, mnist_like, write_idx
from gossamer.config import DATASETS, DataConfig, DataError, DivergedError
from gossamer.sim.data import load_dataset
from gossamer.sim.data.datasets import Arrays, DatasetSource

# ------------------------------------------------------------------ CIFAR-10 python batches

CIFAR_DAMAGE = {  # (how a batch is changed, what the error says after naming the file)
    "data as text": (
        {b"data": "pixels"},
        "b'data' must be an array of pixel values (integers in 0..255); got str 'pixels'",
    ),
    "data as floats": (
        {b"data": np.full((6, 3072), 0.5)},
        "b'data' must be an array of pixel values (integers in 0..255); got an array of "
        "float64, shape (6, 3072)",
    ),
    "data missing": (
        {b"data": None},
        "b'data' must be an array of pixel values (integers in 0..255); got NoneType None",
    ),
    "pixels above 255": (
        {b"data": np.full((6, 3072), 300)},
        "b'data' must hold pixel values in 0..255; got values from 300 to 300",
    ),
    "negative pixels": (
        {b"data": np.full((6, 3072), -1)},
        "b'data' must hold pixel values in 0..255; got values from -1 to -1",
    ),
    "labels as text": (
        {b"labels": "abcdef"},
        "b'labels' must be a list of integer labels in 0..9; got str 'abcdef'",
    ),
    "labels as a dict": (
        {b"labels": {1: 2}},
        "b'labels' must be a list of integer labels in 0..9; got dict {1: 2}",
    ),
    "labels as floats": (
        {b"labels": [1.5] * 6},
        "b'labels' must be a list of integer labels in 0..9; got a list of 6 (float)",
    ),
    "labels nested": (
        {b"labels": [[1, 2]] * 6},
        "b'labels' must be a list of integer labels in 0..9; got a list of 6 (list)",
    ),
    "labels too large for an integer": (
        {b"labels": [2**70] * 6},
        "b'labels' must be a list of integer labels in 0..9; got a list of 6 (int)",
    ),
    "negative labels": (
        {b"labels": [-5, 0, 1, 2, 3, 4]},
        "b'labels' must hold integer labels in 0..9; got labels from -5 to 4",
    ),
    "labels above the classes": (
        {b"labels": [0, 1, 2, 12, 3, 4]},
        "b'labels' must hold integer labels in 0..9; got labels from 0 to 12",
    ),
}


def _rewrite_batch(path, change):
    with open(path, "rb") as handle:
        batch = pickle.load(handle)  # noqa: S301 - our own fixture
    with open(path, "wb") as handle:
        pickle.dump({**batch, **change}, handle)


@pytest.mark.parametrize("damage", list(CIFAR_DAMAGE))
def test_a_damaged_cifar10_batch_is_named_with_its_field(tmp_path, damage):
    change, said = CIFAR_DAMAGE[damage]
    cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    _rewrite_batch(path, change)
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="cifar10", root=tmp_path), 0)
    assert str(raised.value) == f"'{path}': {said}"


def test_an_empty_cifar10_test_batch_is_refused(tmp_path):
    cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    _rewrite_batch(path, {b"data": np.zeros((0, 3072), np.uint8), b"labels": []})
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="cifar10", root=tmp_path), 0)
    assert str(raised.value) == (
        f"'{path}': no samples in b'data'; the training and test sets each need at least one"
    )


def test_a_cifar10_batch_of_other_integer_types_still_loads(tmp_path):
    batches = cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    data, labels = batches["data_batch_1"]
    _rewrite_batch(path, {b"data": data.astype(np.int64), b"labels": np.asarray(labels)})
    loaded = load_dataset(DataConfig(dataset="cifar10", root=tmp_path), 0)
    assert np.array_equal(loaded.x_train[:6].reshape(6, -1).numpy(), data)
    assert loaded.y_train[:6].tolist() == [int(v) for v in labels]


# ------------------------------------------------------------------ npz


def _npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(10, 5)),
        "y_train": np.arange(10) % 3,
        "x_test": rng.normal(size=(4, 5)),
        "y_test": np.arange(4) % 3,
    }
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


NPZ_DAMAGE = {
    "NaN inputs": (
        {"x_train": np.where(np.arange(50).reshape(10, 5) >= 12, np.nan, 1.0)},
        "x_train holds 38 NaN and 0 infinite value(s), the first in sample 2; inputs must "
        "be finite numbers",
    ),
    "infinite inputs": (
        {"x_test": np.full((4, 5), -np.inf)},
        "x_test holds 0 NaN and 20 infinite value(s), the first in sample 0; inputs must "
        "be finite numbers",
    ),
    "inputs beyond float32": (
        {"x_test": np.full((4, 5), 1e300)},
        "x_test (as float32) holds 0 NaN and 20 infinite value(s), the first in sample 0; "
        "inputs must be finite numbers",
    ),
    "empty test set": (
        {"x_test": np.zeros((0, 5)), "y_test": np.zeros(0, np.int64)},
        "no samples in x_test; the training and test sets each need at least one",
    ),
    "empty training set": (
        {"x_train": np.zeros((0, 5)), "y_train": np.zeros(0, np.int64)},
        "no samples in x_train; the training and test sets each need at least one",
    ),
    "labels as floats": (
        {"y_train": np.full(10, 1.0)},
        "y_train must be a list of integer labels in 0..65535; got an array of float64, "
        "shape (10,)",
    ),
    "negative labels": (
        {"y_test": np.array([0, -5, 1, 2])},
        "y_test must hold integer labels in 0..65535; got labels from -5 to 2",
    ),
    "a label no classifier has": (
        {"y_train": np.r_[np.arange(9) % 3, 2**40]},
        "y_train must hold integer labels in 0..65535; got labels from 0 to 1099511627776",
    ),
    "labels as a scalar": (
        {"y_train": np.int64(3)},
        "y_train must be a list of integer labels in 0..65535; got an array of int64, shape ()",
    ),
    "inputs as text": (
        {"x_train": np.array([["a"] * 5] * 10)},
        "x_train must be an array of numbers of shape (samples, features...); got an array "
        "of <U1, shape (10, 5)",
    ),
    "inputs as complex numbers": (
        {"x_train": np.ones((10, 5), np.complex64)},
        "x_train must be an array of numbers of shape (samples, features...); got an array "
        "of complex64, shape (10, 5)",
    ),
    "one number per sample": (
        {"x_train": np.ones(10), "x_test": np.ones(4)},
        "x_train must be an array of numbers of shape (samples, features...); got an array "
        "of float64, shape (10,)",
    ),
    "images and numbers mixed": (
        {"x_train": np.zeros((10, 5), np.uint8)},
        "x_train is uint8 but x_test is float64; store both as uint8 images (normalized by "
        "the training set's statistics) or both as numbers",
    ),
}


@pytest.mark.parametrize("damage", list(NPZ_DAMAGE))
def test_a_damaged_npz_is_named_with_its_array(tmp_path, damage):
    changes, said = NPZ_DAMAGE[damage]
    path = _npz(tmp_path / "data.npz", **changes)
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="npz", root=path), 0)
    assert str(raised.value) == f"'{path}': {said}"


def test_a_truncated_npz_is_named(tmp_path):
    path = _npz(tmp_path / "data.npz")
    whole = path.read_bytes()
    for size in (0, 10, 100, len(whole) // 2, len(whole) - 30):
        path.write_bytes(whole[:size])
        with pytest.raises(DataError) as raised:
            load_dataset(DataConfig(dataset="npz", root=path), 0)
        assert str(raised.value).startswith(
            f"'{path}': not a readable .npz file (truncated, or not a zip of .npy arrays): "
        ), size


def test_a_damaged_array_in_an_npz_is_named(tmp_path):
    path = _npz(tmp_path / "data.npz", x_test=np.arange(4000.0).reshape(4, 1000))
    whole = bytearray(path.read_bytes())
    where = whole.index(np.arange(4000.0)[500:502].tobytes())  # inside x_test's data
    whole[where] ^= 0xFF
    path.write_bytes(bytes(whole))
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="npz", root=path), 0)
    assert str(raised.value).startswith(
        f"'{path}': array x_test cannot be read (truncated or damaged): BadZipFile: Bad CRC-32"
    )


def test_a_run_on_nan_data_is_refused_naming_the_file_not_as_divergence(tmp_path):
    path = _npz(tmp_path / "data.npz", x_train=np.full((60, 12), np.nan), y_train=np.arange(60) % 3)
    config = {**SMALL, "data": {"dataset": "npz", "root": str(path), "batch_size": 5}}
    with pytest.raises(DataError, match=re.escape(f"'{path}': x_train holds 720 NaN")) as raised:
        gossamer.run(config, out=tmp_path / "run")
    assert not isinstance(raised.value, DivergedError)
    assert not (tmp_path / "run" / "summary.json").exists()


# ------------------------------------------------------------------ IDX (MNIST)


def test_damaged_idx_files_are_named(tmp_path):
    mnist_like(tmp_path, gz=False)
    config = DataConfig(dataset="mnist", root=tmp_path)
    images, labels = tmp_path / "t10k-images-idx3-ubyte", tmp_path / "t10k-labels-idx1-ubyte"
    write_idx(images, np.zeros((0, 28, 28), np.uint8))
    write_idx(labels, np.zeros(0, np.uint8))
    with pytest.raises(DataError) as raised:
        load_dataset(config, 0)
    assert str(raised.value) == (
        f"'{images}': no samples in the file; the training and test sets each need at least one"
    )
    write_idx(images, np.zeros((20, 28, 28), np.uint8))
    write_idx(labels, np.r_[np.arange(19) % 10, 200].astype(np.uint8))
    with pytest.raises(DataError) as raised:
        load_dataset(config, 0)
    assert str(raised.value) == (
        f"'{labels}': the labels must hold integer labels in 0..9; got labels from 0 to 200"
    )
    write_idx(labels, np.arange(20) % 10)
    write_idx(images, np.zeros((20, 10, 10), np.uint8))
    with pytest.raises(DataError) as raised:
        load_dataset(config, 0)
    assert str(raised.value) == (
        f"'{images}': expected uint8 images of shape (N, 28, 28) (IDX type 0x08); got an "
        "array of uint8, shape (20, 10, 10)"
    )


# ------------------------------------------------------------------ LEAF JSON


def _edit_leaf(path, user, **record):
    content = json.loads(path.read_text())
    content["user_data"][user].update(record)
    path.write_text(json.dumps(content))


def test_damaged_leaf_files_are_named_with_the_writer(tmp_path):
    leaf(tmp_path, {"f_a": 3, "f_b": 2})
    config = DataConfig(dataset="femnist", root=tmp_path)
    path = tmp_path / "test" / "part_0.json"
    cases = [
        (
            {"x": [[float("nan")] * 784] * 2},
            "x holds 1,568 NaN and 0 infinite value(s), the first in sample 0; inputs must "
            "be finite numbers",
        ),
        (
            {"x": [[2.0] * 784] * 2},
            "x must hold pixel values in [0, 1]; got values from 2.0 to 2.0",
        ),
        (
            {"x": [[0.5] * 700] * 2},
            "x must be a list of rows of 784 numbers; got a list of 2 (list)",
        ),
        (
            {"x": [[0.5] * 784] * 2, "y": [-5, 70]},
            "y must hold integer labels in 0..61; got labels from -5 to 70",
        ),
        ({"y": ["a", "b"]}, "y must be a list of integer labels in 0..61; got a list of 2 (str)"),
    ]
    for record, said in cases:
        _edit_leaf(path, "f_a", **record)
        with pytest.raises(DataError) as raised:
            load_dataset(config, 0)
        assert str(raised.value) == f"'{path}', user 'f_a': {said}"


def test_deep_or_empty_leaf_files_are_refused(tmp_path):
    leaf(tmp_path, {"f_a": 3, "f_b": 2})
    config = DataConfig(dataset="femnist", root=tmp_path)
    path = tmp_path / "test" / "part_0.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError) as raised:
        load_dataset(config, 0)
    assert str(raised.value) == f"'{path}': not a LEAF JSON file: its JSON is nested too deeply"
    empty = json.dumps({"users": [], "num_samples": [], "user_data": {}})
    for part in (tmp_path / "test").glob("*.json"):
        part.write_text(empty)
    with pytest.raises(DataError) as raised:
        load_dataset(config, 0)
    assert str(raised.value) == (
        f"data.root '{tmp_path}': no samples in test/*.json; the training and test sets each "
        "need at least one"
    )


# ------------------------------------------------------------------ any source


@pytest.mark.parametrize(
    ("arrays", "said"),
    [
        (
            Arrays(
                np.full((6, 2), np.nan, np.float32), np.arange(6) % 2, np.ones((2, 2)), [0, 1], 2
            ),
            "x_train holds 12 NaN and 0 infinite value(s), the first in sample 0; inputs must "
            "be finite numbers",
        ),
        (
            Arrays(np.ones((6, 2)), np.arange(6) % 2 - 5, np.ones((2, 2)), [0, 1], 2),
            "y_train must hold integer labels in 0..1; got labels from -5 to -4",
        ),
        (
            Arrays(np.ones((6, 2)), np.arange(6) % 2, np.ones((0, 2)), np.zeros(0, int), 2),
            "no samples in x_test; the training and test sets each need at least one",
        ),
        (
            Arrays(np.ones((6, 2)), np.arange(5) % 2, np.ones((2, 2)), [0, 1], 2),
            "x_train has 6 samples but y_train has 5",
        ),
    ],
)
def test_what_a_plugin_source_loads_is_checked_too(monkeypatch, arrays, said):
    source = DatasetSource("broken_source", lambda config, seed: arrays)
    monkeypatch.setitem(DATASETS._entries, "broken_source", (None, source))
    with pytest.raises(DataError) as raised:
        load_dataset(DataConfig(dataset="broken_source"), 0)
    assert str(raised.value) == f"data.dataset 'broken_source': {said}"
