"""Samples from the OS CSPRNG: uniform doubles and standard normals for DP noise in secure mode.

Threat model: the noise must be unpredictable to anyone who knows the experiment seed, so it never
comes from ``numpy.random``. A fresh 256-bit ChaCha20 key from ``os.urandom`` is drawn for every call
and its keystream (pyca/cryptography) is turned into 53-bit uniforms; normals use Box-Muller.
Box-Muller in floating point still has the Mironov (2012) style fine-structure surface; an exact
discrete sampler belongs to the DP stages that need that guarantee.
"""

from __future__ import annotations

import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

_TWO_POW_MINUS_53 = 2.0**-53


def random_bytes(nbytes: int) -> bytes:
    """``nbytes`` of ChaCha20 keystream under a fresh key and nonce from ``os.urandom``."""
    cipher = Cipher(algorithms.ChaCha20(os.urandom(32), os.urandom(16)), mode=None)
    return cipher.encryptor().update(bytes(nbytes))


def uniform(size: int) -> np.ndarray:
    """``size`` float64 draws, uniform on [0, 1) with 53 random bits each."""
    words = np.frombuffer(random_bytes(8 * size), dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def normal(size: int) -> np.ndarray:
    """``size`` float64 draws from N(0, 1) (Box-Muller on CSPRNG uniforms)."""
    half = (size + 1) // 2
    u = uniform(2 * half)
    radius = np.sqrt(-2.0 * np.log1p(-u[:half]))  # 1 - u in (0, 1]: log is finite
    angle = 2.0 * np.pi * u[half:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:size]
