"""Checks of the fields of data files: labels, pixels, finite inputs, samples, splits.

Each returns the field as the array gossamer uses, or raises a DataError that names
where the field is (the file, or the dataset), the field, what it must hold and what
it holds (scikit-learn's message shape).
"""

from __future__ import annotations

import numpy as np

from gossamer.config import DataError

#: The most classes a file that does not declare them (npz) may number its labels in:
#: more than any classification benchmark has (ImageNet-21k: 21,841), few enough that
#: the model's output layer fits; a larger label is a damaged file, not a class.
MAX_CLASSES = 1 << 16
#: Elements checked at a time for NaN (a bounded temporary, however large the array).
_FINITE_CHUNK = 1 << 22


def describe(value: object) -> str:
    """What a field holds, for a message: an array's dtype and shape, else its type."""
    if isinstance(value, np.ndarray):
        return f"an array of {value.dtype}, shape {value.shape}"
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(item).__name__ for item in value[:1000]})
        return f"a {type(value).__name__} of {len(value)} ({', '.join(kinds) or 'empty'})"
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def to_array(value: object) -> np.ndarray | None:
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists, huge Python ints
        return None


def labels_field(where: str, field: str, value: object, classes: int | None = None) -> np.ndarray:
    """``value`` as (M,) int64 labels in 0..classes-1 (0..MAX_CLASSES-1 when ``classes``
    is None), else a DataError naming ``where`` (the file) and ``field``."""
    labels = to_array(value)
    top = (classes or MAX_CLASSES) - 1
    wanted = f"integer labels in 0..{top}"
    if labels is None or labels.ndim != 1 or (labels.dtype.kind not in "iu" and labels.size):
        raise DataError(f"{where}: {field} must be a list of {wanted}; got {describe(value)}")
    if labels.size:
        low, high = labels.min(), labels.max()
        if low < 0 or high > top:
            raise DataError(f"{where}: {field} must hold {wanted}; got labels from {low} to {high}")
    return labels.astype(np.int64)


def pixels_field(where: str, field: str, value: object) -> np.ndarray:
    """``value`` as a uint8 array: integers in 0..255, else a DataError."""
    pixels = to_array(value)
    if pixels is None or pixels.ndim == 0 or pixels.dtype.kind not in "iu":
        raise DataError(
            f"{where}: {field} must be an array of pixel values (integers in 0..255); "
            f"got {describe(value)}"
        )
    if pixels.dtype != np.uint8 and pixels.size:
        low, high = pixels.min(), pixels.max()
        if low < 0 or high > 255:
            raise DataError(
                f"{where}: {field} must hold pixel values in 0..255; got values from {low} "
                f"to {high}"
            )
    return pixels.astype(np.uint8, copy=False)


def check_finite(where: str, field: str, inputs: np.ndarray) -> None:
    """DataError naming ``where`` and ``field`` if float ``inputs`` (M, ...) hold NaN or
    infinite values (checked a bounded chunk at a time)."""
    if inputs.dtype.kind not in "fc" or not inputs.size:
        return
    flat = inputs.reshape(-1)
    nan = infinite = 0
    first = None
    for begin in range(0, flat.size, _FINITE_CHUNK):
        chunk = flat[begin : begin + _FINITE_CHUNK]
        bad = ~np.isfinite(chunk)
        if bad.any():
            nans = int(np.isnan(chunk).sum())
            nan, infinite = nan + nans, infinite + int(bad.sum()) - nans
            if first is None:
                first = (begin + int(bad.argmax())) // (flat.size // len(inputs))
    if first is not None:
        raise DataError(
            f"{where}: {field} holds {nan:,} NaN and {infinite:,} infinite value(s), the "
            f"first in sample {first}; inputs must be finite numbers"
        )


def check_samples(where: str, field: str, count: int) -> None:
    """DataError if a split has no samples."""
    if count == 0:
        raise DataError(
            f"{where}: no samples in {field}; the training and test sets each need at least one"
        )


def check_splits(where: str, x_train, y_train, x_test, y_test, classes: int | None = None):
    """Both splits checked: inputs (M, ...) of numbers, finite, at least one sample; as
    many labels, in 0..classes-1; samples of one shape; uint8 images in both or neither.
    Returns the labels as int64 arrays."""
    labels = []
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim < 2 or x.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: x_{split} must be an array of numbers of shape (samples, "
                f"features...); got {describe(x)}"
            )
        labels.append(labels_field(where, f"y_{split}", y, classes))
        if len(x) != len(labels[-1]):
            raise DataError(f"{where}: x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        check_samples(where, f"x_{split}", len(x))
        check_finite(where, f"x_{split}", x)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{where}: x_train samples have shape {x_train.shape[1:]}, x_test {x_test.shape[1:]}"
        )
    if (x_train.dtype == np.uint8) != (x_test.dtype == np.uint8):
        raise DataError(
            f"{where}: x_train is {x_train.dtype} but x_test is {x_test.dtype}; store both as "
            "uint8 images (normalized by the training set's statistics) or both as numbers"
        )
    return labels


def leaf_record(where: str, record: dict, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One writer's record of a LEAF file: x (M, 784) float32 in [0, 1] and y labels."""
    if len(record["x"]) != len(record["y"]):
        raise DataError(f"{where}: {len(record['x'])} images but {len(record['y'])} labels")
    x = to_array(record["x"])
    if x is None or x.dtype.kind not in "iuf" or x.size != 784 * len(record["x"]):
        raise DataError(
            f"{where}: x must be a list of rows of 784 numbers; got {describe(record['x'])}"
        )
    x = x.astype(np.float32).reshape(-1, 784)
    check_finite(where, "x", x)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"{where}: x must hold pixel values in [0, 1]; got values from {x.min()} to {x.max()}"
        )
    return x, labels_field(where, "y", record["y"], classes)
