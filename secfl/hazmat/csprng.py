"""Samples from the OS CSPRNG: uniform doubles and standard normals for DP noise in secure mode.

Threat model: the noise must be unpredictable to anyone who knows the experiment seed, so it never
comes from ``numpy.random``. Every call draws a fresh 256-bit ChaCha20 key from ``os.urandom`` and
reads its keystream (``secfl.hazmat.keystream``) from block 0 of the all-zero nonce: the key is
single-use, so a fixed nonce repeats nothing, and the counter starts where it cannot overflow.
(Until this module used ``keystream``, a random 16-byte "nonce" put a random 32-bit counter start
in its first 4 bytes, and a request failed with probability about blocks / 2^32.) The keystream is
turned into 53-bit uniforms; normals use Box-Muller. Box-Muller in floating point still has the
Mironov (2012) style fine-structure surface; an exact discrete sampler belongs to the DP stages
that need that guarantee.

Limits: one call returns at most ``keystream.MAX_READ_BYTES`` (256 GiB: 2^35 uniforms or normals);
from block 0 even that largest call (exactly 2^32 blocks) stays on one nonce, so no accepted call
can reach the counter limit. Sizes that are negative, not ints, or larger raise
``ConfigurationError`` before anything is drawn.
"""

from __future__ import annotations

import os

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat import keystream
from secfl.hazmat.randomness import check_count

_TWO_POW_MINUS_53 = 2.0**-53
MAX_UNIFORMS = keystream.MAX_READ_BYTES // 8


def random_bytes(nbytes: int) -> bytes:
    """``nbytes`` of ChaCha20 keystream under a fresh key from ``os.urandom``, counter from 0.

    Raises:
        ConfigurationError: ``nbytes`` is not an int in [0, 256 GiB].
    """
    return keystream.chacha20(os.urandom(keystream.KEY_BYTES), nbytes)


def _size(size: object) -> int:
    size = check_count(size, "size")
    if size > MAX_UNIFORMS:
        raise ConfigurationError(f"size must be <= {MAX_UNIFORMS} (256 GiB of keystream) per call, got {size}; "
                                 "draw in batches")
    return size


def uniform(size: int) -> np.ndarray:
    """``size`` float64 draws, uniform on [0, 1) with 53 random bits each.

    Raises:
        ConfigurationError: ``size`` is not an int in [0, 2^35].
    """
    words = np.frombuffer(random_bytes(8 * _size(size)), dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * _TWO_POW_MINUS_53


def normal(size: int) -> np.ndarray:
    """``size`` float64 draws from N(0, 1) (Box-Muller on CSPRNG uniforms).

    Raises:
        ConfigurationError: ``size`` is not an int in [0, 2^35].
    """
    size = _size(size)
    half = (size + 1) // 2
    u = uniform(2 * half)
    radius = np.sqrt(-2.0 * np.log1p(-u[:half]))  # 1 - u in (0, 1]: log is finite
    angle = 2.0 * np.pi * u[half:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:size]
