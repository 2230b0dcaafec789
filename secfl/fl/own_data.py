"""Your own data: a ``.npz`` file (``[data] dataset = "npz"``), in-memory arrays, a torch ``Dataset``, and the
opt-in torchvision / Flower Datasets adapters, each turned into a checked, split and standardised ``Dataset``.

The ``.npz`` format: ``x`` (numbers ``[n, ...]``: flat features ``[n, d]``, images ``[n, h, w]`` (a channel
axis is added) or ``[n, c, h, w]``), ``y`` (integer labels ``[n]`` in ``[0, classes)``), optional ``client``
(integer owner id of each example, for the ``natural`` partition) and optional ``x_test`` / ``y_test`` (else
a stratified test split is made). It is read with ``np.load(path, allow_pickle=False)``: an object (pickled)
array is refused, never unpickled, so opening a file cannot run code. Every bad input is a
``ConfigurationError`` that names the key and the fix. Data is held in memory whole (nothing is streamed).

Splitting and standardising are those of the built-ins (``secfl.fl.data``): a test split stratified by label
(by owner when ``client`` is given), one scalar mean and std of the train inputs (or per coordinate with
``standardize = "feature"``, or ``"none"``).
"""

from __future__ import annotations

import difflib
import functools
import numbers
import os
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError
from secfl.fl.data import STANDARDIZE, Dataset, split_train_test, standardise
from secfl.fl.dataset_adapters import flower_arrays, to_numpy, torch_arrays, torchvision_arrays

__all__ = ["KEYS", "NPZ", "Arrays", "NpzSummary", "check_arrays", "from_arrays", "from_flower", "from_torch_dataset",
           "from_torchvision", "load_npz", "npz_summary", "read_npz"]

KEYS: tuple[str, ...] = ("x", "y", "client", "x_test", "y_test")
_FEATURE_KINDS = "biuf"  # bool, signed, unsigned, float: anything else (object, str, complex, ...) is refused
_SAVE_HINT = "write it with np.savez(path, x=x, y=y) (optional: client=..., x_test=..., y_test=...)"


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
    for key, part in zip(("y", "y_test"), labels):
        bad = np.flatnonzero(part >= classes)
        if bad.size:
            raise ConfigurationError(f"{source}: {key} holds {bad.size} label(s) >= classes = {classes} (e.g. "
                                     f"{key}[{bad[0]}] = {part[bad[0]]}); labels must be in [0, {classes})")
    channel = (lambda a: a[:, None]) if x.ndim == 3 else (lambda a: a)  # [n, h, w] images: one channel
    return Arrays(x=channel(x), y=y, num_classes=int(classes), client=client,
                  x_test=None if x_test is None else channel(x_test), y_test=y_test)


def _refuse_dtype(source: str, key: str, dtype: np.dtype, allowed: str, what: str) -> None:
    if dtype.hasobject:
        raise ConfigurationError(f"{source}: {key} is an object array (pickled Python objects): refused, secfl never "
                                 f"unpickles data; store {what} as a numeric array")
    if dtype.kind not in allowed:
        need = f"integers (e.g. {key}.astype(np.int64))" if allowed == "iu" else "real numbers (floats or integers)"
        raise ConfigurationError(f"{source}: {key} has dtype {dtype}; {what} must be {need}")


def _features(source: str, key: str, value: Any) -> np.ndarray:
    """Inputs ``[n, ...]`` (2 to 4 dimensions, no empty one) as finite float32."""
    x = to_numpy(source, key, value)
    _refuse_dtype(source, key, x.dtype, _FEATURE_KINDS, "the inputs")
    _check_feature_shape(source, key, x.shape)
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-range values become inf: reported below
        x = x.astype(np.float32)
    finite = np.isfinite(x).reshape(x.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ConfigurationError(f"{source}: {key} holds NaN or infinite values (or values beyond float32's range) in "
                                 f"{bad.size} example(s), e.g. {key}[{bad[0]}]; clean or drop them")
    return x


def _check_feature_shape(source: str, key: str, shape: tuple[int, ...]) -> None:
    if not 2 <= len(shape) <= 4 or 0 in shape:
        raise ConfigurationError(f"{source}: {key} has shape {shape}; pass [n, d] features, [n, h, w] or [n, c, h, w] "
                                 "images, with n >= 1 and no empty dimension")


def _integers(source: str, key: str, value: Any, n: int, what: str) -> np.ndarray:
    """A 1-D integer array of length ``n`` (labels or owner ids), as int64; labels must be >= 0."""
    a = to_numpy(source, key, value)
    _refuse_dtype(source, key, a.dtype, "iu", what)
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


# --------------------------------------------------------------------------------------------------- .npz files

def _check_path(path: Any) -> Path:
    """The file named by ``options.path``: an existing zip archive."""
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ConfigurationError(f"dataset 'npz': options.path={path!r} is invalid; give the .npz file, e.g. "
                                 'options = { path = "my.npz" }')
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"dataset 'npz': {str(path)!r} is not a readable file (resolved: {path.resolve()}); "
                                 "a relative options.path in a scenario file is relative to that file's directory")
    if not zipfile.is_zipfile(path):
        raise ConfigurationError(f"dataset 'npz': {path} is not an .npz (zip) archive; {_SAVE_HINT}")
    return path


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Key -> (shape, dtype) of every array in the archive, from the .npy headers alone (no data is read)."""
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise ConfigurationError(f"dataset 'npz': {path} holds {info.filename!r}, which is not a .npy "
                                             f"array; {_SAVE_HINT}")
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                    else:
                        raise ValueError(f".npy format version {version} is not supported")
                declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                if not dtype.hasobject and declared > info.file_size:  # before allocating what it claims
                    raise ValueError(f"{info.filename} declares shape {tuple(shape)} of {dtype} ({declared} bytes) "
                                     f"but holds {info.file_size} bytes")
                out[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    except ConfigurationError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, SyntaxError) as exc:
        raise ConfigurationError(f"dataset 'npz': {path} is corrupt or not written by NumPy ({exc}); "
                                 f"{_SAVE_HINT}") from None
    unknown, missing = sorted(set(out) - set(KEYS)), [k for k in ("x", "y") if k not in out]
    if unknown:
        close = {k: difflib.get_close_matches(k, KEYS, n=1) for k in unknown}
        hint = "".join(f" ({k!r}: did you mean {c[0]!r}?)" for k, c in close.items() if c)
        raise ConfigurationError(f"dataset 'npz': {path} holds unknown key(s) {unknown}{hint}; the keys are x, y and "
                                 "optionally client, x_test, y_test")
    if missing:
        raise ConfigurationError(f"dataset 'npz': {path} lacks key(s) {missing}: it needs x (inputs [n, ...]) and y "
                                 f"(integer labels [n]); {_SAVE_HINT}")
    for key, (shape, dtype) in out.items():  # the cheap checks, before any data is read
        source = f"dataset 'npz': {path}"
        if key.startswith("x"):
            _refuse_dtype(source, key, dtype, _FEATURE_KINDS, "the inputs")
            _check_feature_shape(source, key, shape)
        else:
            _refuse_dtype(source, key, dtype, "iu", "labels" if key.startswith("y") else "owner ids")
    return out


def _read(path: Path, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the archive, loaded with ``allow_pickle=False``."""
    out = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in keys:
                out[key] = npz[key]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise ConfigurationError(f"dataset 'npz': cannot read {path} ({exc}); {_SAVE_HINT}") from None
    except MemoryError:
        raise ConfigurationError(f"dataset 'npz': {path} does not fit in memory; use a subset") from None
    return out


def read_npz(path: str | os.PathLike[str], *, classes: int | None = None) -> Arrays:
    """Read and check an ``.npz`` dataset file (``allow_pickle=False``); see the module docstring for its keys.

    Raises:
        ConfigurationError: a missing file, not a zip, an unknown or missing key, an object array, a wrong shape
            or dtype, NaN/inf inputs, labels out of range, too few examples.
    """
    path = _check_path(path)
    arrays = _read(path, _headers(path))
    return check_arrays(**arrays, classes=classes, source=f"dataset 'npz': {path}")


def npz_summary(path: str | os.PathLike[str], *, classes: int | None = None) -> NpzSummary:
    """Input shape, classes and owner count of an ``.npz`` dataset, reading only the headers and the integer
    arrays (``y``, ``y_test``, ``client``); cached while the file is unchanged.

    Raises:
        ConfigurationError: as ``read_npz``, except for the checks of the input values (NaN/inf).
    """
    path = _check_path(path)
    stat = path.stat()
    return _summary(path.resolve(), stat.st_mtime_ns, stat.st_size, classes)


@functools.lru_cache(maxsize=16)
def _summary(path: Path, _mtime: int, _size: int, classes: int | None) -> NpzSummary:
    headers = _headers(path)
    small = _read(path, [k for k in ("y", "y_test", "client") if k in headers])
    x_shape = headers["x"][0]
    stand_in = {key: np.zeros((shape[0], *(1,) * (len(shape) - 1)), np.float32)  # the shapes without the data
                for key, (shape, _) in headers.items() if key.startswith("x")}
    if "x_test" in stand_in and headers["x_test"][0][1:] != x_shape[1:]:
        raise ConfigurationError(f"dataset 'npz': {path}: x_test has examples of shape {headers['x_test'][0][1:]} but "
                                 f"x has {x_shape[1:]}; they must match")
    arrays = check_arrays(**stand_in, **small, classes=classes, source=f"dataset 'npz': {path}")
    shape = tuple(int(s) for s in x_shape[1:])
    owners = None if arrays.client is None else int(np.unique(arrays.client).size)
    return NpzSummary(input_shape=(1, *shape) if len(shape) == 2 else shape, num_classes=arrays.num_classes,
                      owners=owners)


# ------------------------------------------------------------------------------------------ Datasets

def from_arrays(x: Any, y: Any, *, client: Any = None, x_test: Any = None, y_test: Any = None,
                classes: int | None = None, seed: int = 0, test_fraction: float = 0.2, standardize: str = "scalar",
                name: str = "arrays") -> Dataset:
    """A ``Dataset`` from your own arrays (NumPy arrays, CPU tensors or nested lists), checked, split and
    standardised like the built-ins.

    Args:
        x: Inputs ``[n, d]``, ``[n, h, w]`` (becomes ``[n, 1, h, w]``) or ``[n, c, h, w]``; floats or integers,
            finite.
        y: Integer labels ``[n]`` in ``[0, classes)``.
        client: Integer owner id of each example ``[n]`` (any values), for the ``natural`` partition; the test
            split is then stratified by owner instead of label.
        x_test, y_test: A test set (both or neither); without it ``test_fraction`` of each stratum is held out.
        classes: Number of classes; default: the largest label + 1.
        seed: Seed of the split's shuffling.
        test_fraction: In (0, 1); ignored when ``x_test`` is given.
        standardize: ``scalar`` (one mean and std over the train inputs, as the built-ins), ``feature`` (per
            input coordinate: for tabular features of different scales) or ``none``.
        name: The ``Dataset``'s name (a registry entry's name replaces it).

    Raises:
        ConfigurationError: bad arrays (see ``check_arrays``) or arguments.
    """
    arrays = check_arrays(x, y, client=client, x_test=x_test, y_test=y_test, classes=classes, source="from_arrays")
    return _assemble(arrays, seed=seed, test_fraction=test_fraction, standardize=standardize, name=name)


def from_torch_dataset(dataset: Any, *, test: Any = None, client: Any = None, classes: int | None = None,
                       seed: int = 0, test_fraction: float = 0.2, standardize: str = "scalar",
                       name: str = "torch") -> Dataset:
    """A ``Dataset`` from a ``torch.utils.data.Dataset`` of ``(input, label)`` pairs (and optionally a ``test``
    one), e.g. a torchvision dataset with ``transform=ToTensor()``. The data is iterated once and held in memory
    whole (memory is not bounded: convert a subset for data that does not fit). Other arguments: ``from_arrays``.
    """
    x, y = torch_arrays(dataset, what="dataset")
    x_test, y_test = torch_arrays(test, what="test") if test is not None else (None, None)
    return from_arrays(x, y, client=client, x_test=x_test, y_test=y_test, classes=classes, seed=seed,
                       test_fraction=test_fraction, standardize=standardize, name=name)


def load_npz(path: str | os.PathLike[str], *, seed: int = 0, test_fraction: float = 0.2, classes: int | None = None,
             standardize: str = "scalar") -> Dataset:
    """A ``Dataset`` from an ``.npz`` file with keys ``x``, ``y`` and optionally ``client``, ``x_test``,
    ``y_test`` (see the module docstring), read with ``allow_pickle=False``. Other arguments: ``from_arrays``.

    Raises:
        ConfigurationError: a missing or bad file (every check of ``read_npz``).
    """
    return _assemble(read_npz(path, classes=classes), seed=seed, test_fraction=test_fraction,
                     standardize=standardize, name="npz")


def from_torchvision(name: str, root: str | os.PathLike[str], *, download: bool = False, seed: int = 0,
                     standardize: str = "scalar") -> Dataset:
    """A torchvision dataset with a ``train=`` argument (``"MNIST"``, ``"FashionMNIST"``, ``"CIFAR10"``, ...)
    stored under ``root``, its own test split kept. Opt-in: needs ``pip install torchvision``; downloads only
    with ``download=True``. Held in memory whole."""
    arrays = torchvision_arrays(name, root, download=download)
    return from_arrays(**arrays, seed=seed, standardize=standardize, name=name.lower())


def from_flower(dataset: str, *, x_key: str = "image", y_key: str = "label", client_key: str | None = None,
                train_split: str = "train", test_split: str | None = "test", seed: int = 0,
                test_fraction: float = 0.2, standardize: str = "scalar", **load_kwargs: Any) -> Dataset:
    """A Flower Datasets (Hugging Face Hub) dataset, e.g. ``from_flower("ylecun/mnist")`` or
    ``from_flower("flwrlabs/femnist", client_key="writer_id", test_split=None)`` (owner ids for the ``natural``
    partition). Opt-in: needs ``pip install flwr-datasets`` and network access. Held in memory whole. Arguments:
    ``_flower_arrays`` and ``from_arrays``."""
    arrays = flower_arrays(dataset, x_key=x_key, y_key=y_key, client_key=client_key, train_split=train_split,
                            test_split=test_split, **load_kwargs)
    return from_arrays(**arrays, seed=seed, test_fraction=test_fraction, standardize=standardize,
                       name=dataset.rsplit("/", 1)[-1])


_NPZ_OPTIONS = ("path", "classes", "standardize")


class _Npz:
    """The loader of ``dataset = "npz"``: ``options = { path = "my.npz", classes = ..., standardize = ... }``."""

    def __repr__(self) -> str:
        return "npz"

    def __call__(self, *, seed: int, test_fraction: float, path: Any = None, classes: int | None = None,
                 standardize: str = "scalar") -> Dataset:
        return load_npz(path, seed=seed, test_fraction=test_fraction, classes=classes, standardize=standardize)

    def describe(self, **options: Any) -> tuple[tuple[int, ...], int]:
        summary = self._summary(options)
        return summary.input_shape, summary.num_classes

    def owners(self, **options: Any) -> int | None:
        return self._summary(options).owners

    @staticmethod
    def _summary(options: dict[str, Any]) -> NpzSummary:
        unknown = sorted(set(options) - set(_NPZ_OPTIONS))
        if unknown:
            raise ConfigurationError(f"dataset 'npz' got unknown option(s) {unknown}; accepted: "
                                     f"{', '.join(_NPZ_OPTIONS)}")
        _check_standardize(options.get("standardize", "scalar"))
        return npz_summary(options.get("path"), classes=options.get("classes"))


#: The registry entry of ``dataset = "npz"`` (``secfl.fl.data.LOADERS["npz"]`` names it).
NPZ = _Npz()


def _assemble(arrays: Arrays, *, seed: int, test_fraction: float, standardize: str, name: str) -> Dataset:
    """Split checked arrays (unless they carry a test set), shuffle and standardise them, as the built-ins."""
    check_int("seed", seed, 0)
    _check_standardize(standardize)
    rng = np.random.default_rng(seed)
    if arrays.x_test is None:
        groups = arrays.y if arrays.client is None else arrays.client
        train, test = split_train_test(groups, test_fraction, rng)
        x_test, y_test = arrays.x[test], arrays.y[test]
    else:
        train = rng.permutation(len(arrays.y))
        test = rng.permutation(len(arrays.y_test))
        x_test, y_test = arrays.x_test[test], arrays.y_test[test]
    x_train, x_test = standardise(arrays.x[train], x_test, standardize)
    return Dataset(name=name, x_train=x_train, y_train=arrays.y[train], x_test=x_test, y_test=y_test,
                   input_shape=arrays.input_shape, num_classes=arrays.num_classes,
                   natural_clients=None if arrays.client is None else arrays.client[train])


def _check_standardize(standardize: object) -> None:
    if standardize not in STANDARDIZE:
        raise ConfigurationError(f"standardize={standardize!r} is invalid; choose one of {', '.join(STANDARDIZE)}")
