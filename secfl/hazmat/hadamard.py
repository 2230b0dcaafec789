"""The randomized Walsh-Hadamard rotation x -> H D x / sqrt(d) on power-of-two lengths, and its inverse.

H is the Sylvester Hadamard matrix and D a diagonal of random signs; H D / sqrt(d) is orthogonal, so
the rotation keeps L2 norms and spreads a vector's mass evenly over its coordinates (each about
||x|| / sqrt(d)), which is what keeps rounding and modular wrap small in the discrete DP mechanisms.
"""

from __future__ import annotations

import numpy as np


def padded_length(d: int) -> int:
    """The power of two >= d (>= 1)."""
    return 1 << max(0, (int(d) - 1).bit_length())


def fwht(x: np.ndarray) -> np.ndarray:
    """The unnormalized fast Walsh-Hadamard transform of a power-of-two length vector (a new array)."""
    n = x.size
    if n & (n - 1):
        raise ValueError(f"fwht needs a power-of-two length, got {n}")
    y = np.array(x, dtype=np.float64)
    half = 1
    while half < n:
        pairs = y.reshape(-1, 2, half)
        a, b = pairs[:, 0, :].copy(), pairs[:, 1, :]
        pairs[:, 0, :] += b
        pairs[:, 1, :] = a - b
        half *= 2
    return y


def signs(length: int, seed: int) -> np.ndarray:
    """The diagonal D: ``length`` random signs from ``seed`` (public randomness, shared by all parties)."""
    return np.where(np.random.default_rng(seed).random(length) < 0.5, -1.0, 1.0)


def rotate(x: np.ndarray, seed: int) -> np.ndarray:
    """H D pad(x) / sqrt(d'), with d' = padded_length(len(x))."""
    d = padded_length(x.size)
    padded = np.zeros(d)
    padded[: x.size] = x
    return fwht(padded * signs(d, seed)) / np.sqrt(d)


def unrotate(y: np.ndarray, seed: int, dim: int) -> np.ndarray:
    """The inverse of ``rotate``: D H y / sqrt(d'), truncated to the first ``dim`` coordinates."""
    return (fwht(y) / np.sqrt(y.size) * signs(y.size, seed))[:dim]
