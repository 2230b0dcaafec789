"""Arithmetic in the ring Z_2^b on numpy uint32/uint64 words (two's-complement representatives)."""

from __future__ import annotations

import math

import numpy as np


def bits_for_sum(max_abs: int, count: int) -> int:
    """Bits b such that any sum of ``count`` integers in [-max_abs, max_abs] fits Z_2^b without wrapping.

    The sums lie in [-count*max_abs, count*max_abs]: 2*count*max_abs + 1 values, at most 2^b.
    """
    return max(1, math.ceil(math.log2(2 * count * max_abs + 1)))


def word_dtype(bits: int) -> np.dtype:
    """The machine word that holds Z_2^b: uint32 for b <= 32, else uint64 (2^b divides 2^32 or 2^64)."""
    return np.dtype(np.uint32) if bits <= 32 else np.dtype(np.uint64)


def lift(residues: np.ndarray, bits: int) -> np.ndarray:
    """uint32/uint64 words -> centred representatives of their residues mod 2^b, as int64 (b <= 62 or 64)."""
    if bits == 64:
        return residues.astype(np.uint64).view(np.int64)
    if not 1 <= bits <= 62:
        raise ValueError(f"lift supports 1..62 or 64 bits, got {bits}")
    reduced = (residues.astype(np.uint64) & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.where(reduced >= (1 << (bits - 1)), reduced - (1 << bits), reduced)


def ring_sum(arrays: np.ndarray) -> np.ndarray:
    """Sum rows of unsigned words mod 2^32 or 2^64 (numpy's unsigned addition wraps: exactly that)."""
    return np.sum(arrays, axis=0, dtype=arrays.dtype)
