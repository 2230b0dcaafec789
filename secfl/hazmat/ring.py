"""Arithmetic in the ring Z_2^b on numpy uint64 arrays (two's-complement embedding of integers)."""

from __future__ import annotations

import math

import numpy as np


def bits_for_sum(max_abs: int, count: int) -> int:
    """Bits b such that any sum of ``count`` integers in [-max_abs, max_abs] fits Z_2^b without wrapping.

    The sums lie in [-count*max_abs, count*max_abs]: 2*count*max_abs + 1 values, at most 2^b.
    """
    return max(1, math.ceil(math.log2(2 * count * max_abs + 1)))


def embed(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed int64 -> uint64 residues mod 2^b."""
    mask = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64(0xFFFFFFFFFFFFFFFF)
    return values.astype(np.int64).view(np.uint64) & mask


def lift(residues: np.ndarray, bits: int) -> np.ndarray:
    """uint64 values mod 2^64 -> centred representatives in [-2^(b-1), 2^(b-1)) as int64 (b <= 62 or 64)."""
    if bits == 64:
        return residues.view(np.int64)
    if not 1 <= bits <= 62:
        raise ValueError(f"lift supports 1..62 or 64 bits, got {bits}")
    reduced = (residues & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.where(reduced >= (1 << (bits - 1)), reduced - (1 << bits), reduced)


def ring_sum(arrays: np.ndarray) -> np.ndarray:
    """Sum uint64 rows mod 2^64 (numpy's unsigned addition wraps, which is exactly that)."""
    return np.sum(arrays, axis=0, dtype=np.uint64)
