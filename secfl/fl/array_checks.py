"""Checking a dataset's arrays, whatever they came from (a ``.npz`` file, NumPy arrays, tensors, nested lists):
inputs ``[n, ...]`` as finite float32, labels and owner ids as int64, the class count, an optional test set.

Every bad input is a ``ConfigurationError`` that starts with the ``source`` it came from and names the key
and the fix; an object (pickled) array is refused, never unpickled.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.fl.dataset_adapters import to_numpy

__all__ = ["FEATURE_KINDS", "Arrays", "NpzSummary", "check_arrays", "refuse_dtype", "check_feature_shape"]

FEATURE_KINDS = "biuf"  # bool, signed, unsigned, float: anything else (object, str, complex, ...) is refused


@dataclass(frozen=True)
class Arrays:
    """Checked arrays of one dataset, before the split and the standardisation.

    Attributes:
        x: float32 ``[n, *input_shape]`` (``[n, h, w]`` inputs have become ``[n, 1, h, w]``).
        y: int64 ``[n]`` in ``[0, num_classes)``.
        num_classes: The number of classes.
        client: int64 ``[n]`` owner id of each example, or None.
        x_test, y_test: A given test set (float32 / int64), or None (then a stratified split is made).
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    client: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.x.shape[1:])


@dataclass(frozen=True)
class NpzSummary:
    """What a scenario needs to know of an ``.npz`` file without loading its inputs."""

    input_shape: tuple[int, ...]
    num_classes: int
    owners: int | None  # distinct ``client`` ids, or None without a ``client`` array


def check_arrays(x: Any, y: Any, *, client: Any = None, x_test: Any = None, y_test: Any = None,
                 classes: int | None = None, source: str = "arrays") -> Arrays:
    """Check user arrays (NumPy arrays, CPU tensors or nested lists) and return them as ``Arrays``.

    ``classes`` defaults to the largest label + 1. ``source`` starts every error message.

    Raises:
        ConfigurationError: a non-numeric or object array, a wrong shape, NaN/inf inputs, labels that are not
            integers in ``[0, classes)``, fewer than 2 classes or 2 examples, or ``x_test`` without ``y_test``.
    """
    x = _features(source, "x", x)
    n = x.shape[0]
    y = _integers(source, "y", y, n, "labels")
    if client is not None:
        client = _integers(source, "client", client, n, "owner ids")
    if (x_test is None) != (y_test is None):
        given, missing = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise ConfigurationError(f"{source}: {given} is given without {missing}; give both (a test set) or neither "
                                 "(a stratified test split is made)")
    if x_test is None and n < 2:
        raise ConfigurationError(f"{source}: x holds {n} example; at least 2 are needed (train and test), or give "
                                 "x_test and y_test")
    if x_test is not None:
        x_test = _features(source, "x_test", x_test)
        if x_test.shape[1:] != x.shape[1:]:
            raise ConfigurationError(f"{source}: x_test has examples of shape {x_test.shape[1:]} but x has "
                                     f"{x.shape[1:]}; they must match")
        y_test = _integers(source, "y_test", y_test, x_test.shape[0], "labels")
    labels = [y] if y_test is None else [y, y_test]
    largest = max(int(part.max()) for part in labels)
    if classes is None:
        if largest < 1:
            raise ConfigurationError(f"{source}: every label is {largest}; a classifier needs >= 2 classes (labels "
                                     "0..classes-1); give options.classes (classes=) if the file lacks some")
        classes = largest + 1
    elif isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 2:
        raise ConfigurationError(f"{source}: classes={classes!r} is invalid; pass an integer >= 2")
    for key, part in zip(("y", "y_test")[:len(labels)], labels, strict=True):
        bad = np.flatnonzero(part >= classes)
        if bad.size:
            raise ConfigurationError(f"{source}: {key} holds {bad.size} label(s) >= classes = {classes} (e.g. "
                                     f"{key}[{bad[0]}] = {part[bad[0]]}); labels must be in [0, {classes})")
    channel = (lambda a: a[:, None]) if x.ndim == 3 else (lambda a: a)  # [n, h, w] images: one channel
    return Arrays(x=channel(x), y=y, num_classes=int(classes), client=client,
                  x_test=None if x_test is None else channel(x_test), y_test=y_test)


def refuse_dtype(source: str, key: str, dtype: np.dtype, allowed: str, what: str) -> None:
    if dtype.hasobject:
        raise ConfigurationError(f"{source}: {key} is an object array (pickled Python objects): refused, secfl never "
                                 f"unpickles data; store {what} as a numeric array")
    if dtype.kind not in allowed:
        need = f"integers (e.g. {key}.astype(np.int64))" if allowed == "iu" else "real numbers (floats or integers)"
        raise ConfigurationError(f"{source}: {key} has dtype {dtype}; {what} must be {need}")


def _features(source: str, key: str, value: Any) -> np.ndarray:
    """Inputs ``[n, ...]`` (2 to 4 dimensions, no empty one) as finite float32."""
    x = to_numpy(source, key, value)
    refuse_dtype(source, key, x.dtype, FEATURE_KINDS, "the inputs")
    check_feature_shape(source, key, x.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: reported below
        x = x.astype(np.float32)
    finite = np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ConfigurationError(f"{source}: {key} holds NaN or infinite values (or values beyond float32's range) in "
                                 f"{bad.size} example(s), e.g. {key}[{bad[0]}]; clean or drop them")
    return x


def check_feature_shape(source: str, key: str, shape: tuple[int, ...]) -> None:
    if not 2 <= len(shape) <= 4 or 0 in shape:
        raise ConfigurationError(f"{source}: {key} has shape {shape}; pass [n, d] features, [n, h, w] or [n, c, h, w] "
                                 "images, with n >= 1 and no empty dimension")


def _integers(source: str, key: str, value: Any, n: int, what: str) -> np.ndarray:
    """A 1-D integer array of length ``n`` (labels or owner ids), as int64; labels must be >= 0."""
    a = to_numpy(source, key, value)
    refuse_dtype(source, key, a.dtype, "iu", what)
    if a.shape != (n,):
        raise ConfigurationError(f"{source}: {key} has shape {a.shape}; it needs one {what[:-1]} per example: "
                                 f"shape ({n},)")
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise ConfigurationError(f"{source}: {key} holds values beyond int64; renumber them")
    a = a.astype(np.int64)
    if what == "labels" and a.size and int(a.min()) < 0:
        i = int(np.argmin(a))
        raise ConfigurationError(f"{source}: {key}[{i}] = {a[i]} is negative; labels must be in [0, classes)")
    return a
