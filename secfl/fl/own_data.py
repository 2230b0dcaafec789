"""Your own data: a ``.npz`` file (``[data] dataset = "npz"``), in-memory arrays, a torch ``Dataset``, and the
opt-in torchvision / Flower Datasets adapters, each turned into a checked, split and standardised ``Dataset``.

The ``.npz`` format: ``x`` (numbers ``[n, ...]``: flat features ``[n, d]``, images ``[n, h, w]`` (a channel
axis is added) or ``[n, c, h, w]``), ``y`` (integer labels ``[n]`` in ``[0, classes)``), optional ``client``
(integer owner id of each example, for the ``natural`` partition) and optional ``x_test`` / ``y_test`` (else
a stratified test split is made). It is read with ``np.load(path, allow_pickle=False)``: an object (pickled)
array is refused, never unpickled, so opening a file cannot run code. Every bad input is a
``ConfigurationError`` that names the key and the fix. Data is held in memory whole (nothing is streamed).

The arrays are checked by ``secfl.fl.array_checks`` whatever their source. Splitting and standardising are
those of the built-ins (``secfl.fl.data``): a test split stratified by label
(by owner when ``client`` is given), one scalar mean and std of the train inputs (or per coordinate with
``standardize = "feature"``, or ``"none"``).
"""

from __future__ import annotations

import difflib
import functools
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError
from secfl.fl.array_checks import FEATURE_KINDS, Arrays, NpzSummary, check_arrays, check_feature_shape, refuse_dtype
from secfl.fl.data import STANDARDIZE, Dataset, split_train_test, standardise
from secfl.fl.dataset_adapters import flower_arrays, torch_arrays, torchvision_arrays

__all__ = ["KEYS", "NPZ", "Arrays", "NpzSummary", "check_arrays", "from_arrays", "from_flower", "from_torch_dataset",
           "from_torchvision", "load_npz", "npz_summary", "read_npz"]

KEYS: tuple[str, ...] = ("x", "y", "client", "x_test", "y_test")
_SAVE_HINT = "write it with np.savez(path, x=x, y=y) (optional: client=..., x_test=..., y_test=...)"


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
            refuse_dtype(source, key, dtype, FEATURE_KINDS, "the inputs")
            check_feature_shape(source, key, shape)
        else:
            refuse_dtype(source, key, dtype, "iu", "labels" if key.startswith("y") else "owner ids")
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
