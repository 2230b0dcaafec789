"""The bit-packed plaintext upload of a FedBAT update: one bit per binarized weight, not 32.

A FedBAT client's update holds, in every binarized segment (a Conv/Linear weight), values that are
all +alpha or -alpha for that layer's own alpha; every other coordinate is a full-precision float.
``FedBatPack`` sends the segments as packed bits plus one float32 alpha each, and the rest (and the
relative weight) as float32, all in uint32 words, so the bytes on the wire really shrink (~1/30).

Threat model: none beyond the plaintext sum's: the server decodes each client's update. Per-client
alphas cannot be summed securely (each client's bits mean something different), so the stage needs
groups of one; the secure route for bits is a shared public scale with ``BitPack``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update


def check_segments(segments: Sequence[Sequence[int]], owner: str) -> list[tuple[int, int]]:
    """``segments`` as sorted, disjoint, non-empty ``(start, stop)`` int pairs, or ConfigurationError."""
    try:
        cleaned = [(int(a), int(b)) for a, b in segments]
    except (TypeError, ValueError):
        raise ConfigurationError(f"{owner}(segments=...): a list of [start, stop) pairs of ints") from None
    last = 0
    for start, stop in cleaned:
        if not last <= start < stop:
            raise ConfigurationError(f"{owner}(segments=...): segments must be non-empty, sorted, disjoint")
        last = stop
    return cleaned


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """0/1 values -> uint32 words, 32 per word, little-endian bit order (last word zero-padded)."""
    padded = np.zeros(-(-bits.size // 32) * 32, dtype=np.uint8)
    padded[: bits.size] = bits
    return np.packbits(padded, bitorder="little").view("<u4").astype(np.uint32)


def _unpack_bits(words: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")[:count]


class FedBatPack(BaseStage):
    """Pack a FedBAT update: per binarized segment its sign bits and alpha; other values as float32.

    Args:
        segments: ``[start, stop)`` of each binarized weight in the update (``fedbat.binarized_segments``;
            a scenario fills it from the model).

    Guarantee: decode(encode(x)) == x exactly for a FedBAT update (float32 values); an input whose
    segment is not +-one alpha is refused. Needs groups of one (each client's alphas differ).
    """

    name: ClassVar[str] = "fedbat_pack"
    output: ClassVar[str] = "ring"
    packed: ClassVar[bool] = True  # bits and float32 bit patterns in words: only a protocol summing raw words

    def __init__(self, segments: Sequence[Sequence[int]]) -> None:
        self.segments = check_segments(segments, "FedBatPack")

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> FedBatPack:
        if group_size != 1:
            raise IncompatibleStagesError(
                "FedBatPack sends each client's own alphas: it needs grouping = { kind = \"individual\" } and the "
                "plaintext protocol (a secure sum of bits needs a shared public scale: sign + bitpack)"
            )
        return self

    def _split(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        binarized = np.zeros(size, dtype=bool)
        for start, stop in self.segments:
            if stop > size:
                raise ConfigurationError(f"FedBatPack: segment [{start}, {stop}) is beyond the update of {size} values")
            binarized[start:stop] = True
        return binarized, ~binarized

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        values = update.values.astype(np.float32)
        _, rest = self._split(values.size)
        words = []
        for start, stop in self.segments:
            segment = values[start:stop]
            alpha = np.float32(np.abs(segment).max())
            if not np.all(np.abs(segment) == alpha):
                raise ConfigurationError(
                    f"FedBatPack: coordinates [{start}, {stop}) are not +-one alpha; use it after method = \"fedbat\""
                )
            words.append(np.array([alpha], dtype=np.float32).view(np.uint32))
            words.append(_pack_bits((segment > 0).astype(np.uint8)))
        words.append(values[rest].view(np.uint32))
        return update.replace(np.concatenate(words).astype(np.uint32))

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        if count != 1:
            raise IncompatibleStagesError("FedBatPack decodes one client's upload at a time (groups of one)")
        words = np.asarray(total).astype(np.uint32)
        size = self._size(words.size)
        out = np.zeros(size, dtype=np.float32)
        at = 0
        for start, stop in self.segments:
            alpha = words[at : at + 1].view(np.float32)[0]
            n_words = -(-(stop - start) // 32)
            bits = _unpack_bits(words[at + 1 : at + 1 + n_words], stop - start)
            out[start:stop] = np.where(bits == 1, alpha, -alpha)
            at += 1 + n_words
        _, rest = self._split(size)
        out[rest] = words[at:].view(np.float32)
        return out.astype(np.float64)

    def _size(self, n_words: int) -> int:
        """The update's length (weight included) from the number of words."""
        packed = sum(1 + -(-(stop - start) // 32) for start, stop in self.segments)
        binarized = sum(stop - start for start, stop in self.segments)
        return binarized + (n_words - packed)

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=math.inf, l2=math.inf)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/segments": float(len(self.segments))}

    def __repr__(self) -> str:
        return f"FedBatPack(segments={len(self.segments)})"
