"""The secure bit-sum: ±scale vectors packed as bits into r-bit fields of uint32 words.

With one PUBLIC scale s shared by every client, a binarized update s * (2 b - 1) is exactly its bit
vector b in {0, 1}^d. Summing bit vectors over a group of at most K clients needs r = ceil(log2(K + 1))
bits per coordinate, not 32: ``BitPack`` packs floor(32 / r) such r-bit fields into each uint32 word.
Each field's sum over <= K clients is <= K < 2^r, so a field's sum never carries into the next field
and the highest field of a word never passes 2^32: summing the packed words mod 2^32 (what Plaintext
and SecAgg / SecAgg+ do, masks included, since the masks cancel mod 2^32) yields the packed field sums
exactly. This is option (a) of FedBAT's secure composition (docs/methods/fedbat.md section 4): the
uplink shrinks from 32 to r bits per coordinate (8x for K <= 15, 32x for groups of 1).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError, ProtocolError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

WORD_BITS = 32


def fields_per_word(field_bits: int) -> int:
    """How many ``field_bits``-bit fields one uint32 word holds: floor(32 / r)."""
    if not (isinstance(field_bits, (int, np.integer)) and 1 <= field_bits <= WORD_BITS):
        raise ConfigurationError(f"field bits must be an int in 1..{WORD_BITS}, got {field_bits!r}")
    return WORD_BITS // int(field_bits)


def words_for(fields: int, field_bits: int) -> int:
    """Number of uint32 words holding ``fields`` fields of ``field_bits`` bits."""
    return -(-int(fields) // fields_per_word(field_bits))


def pack_fields(fields: np.ndarray, field_bits: int) -> np.ndarray:
    """Pack non-negative integers < 2^r into uint32 words, floor(32 / r) per word.

    Layout (little-endian fields): field j lies in word j // f at bits [r (j % f), r (j % f) + r),
    f = floor(32 / r); the unused high bits of every word and the fields after the last are zero.
    """
    f = fields_per_word(field_bits)
    values = np.asarray(fields)
    if values.ndim != 1:
        raise ConfigurationError(f"pack_fields takes a 1-D array, got shape {values.shape}")
    if values.size and (values.min() < 0 or values.max() >= (1 << field_bits)):
        raise ConfigurationError(f"pack_fields: values must lie in [0, 2^{field_bits})")
    padded = np.zeros(words_for(values.size, field_bits) * f, dtype=np.uint64)
    padded[: values.size] = values
    shifts = (np.uint64(field_bits) * np.arange(f, dtype=np.uint64))
    packed = np.bitwise_or.reduce(padded.reshape(-1, f) << shifts, axis=1) if f > 1 else padded
    return packed.astype(np.uint32)


def unpack_fields(words: np.ndarray, field_bits: int, count: int | None = None) -> np.ndarray:
    """The inverse of ``pack_fields``: the first ``count`` fields (default: every slot) as int64."""
    f = fields_per_word(field_bits)
    w = np.asarray(words)
    if w.ndim != 1 or w.dtype.kind != "u":
        raise ConfigurationError(f"unpack_fields takes 1-D unsigned words, got {w.dtype} of shape {w.shape}")
    w = w.astype(np.uint64) & np.uint64(0xFFFF_FFFF)  # the ring is Z_2^32 whatever the carrier
    shifts = np.uint64(field_bits) * np.arange(f, dtype=np.uint64)
    fields = ((w[:, None] >> shifts) & np.uint64((1 << field_bits) - 1)).reshape(-1).astype(np.int64)
    return fields if count is None else fields[:count]


def high_bits_clear(words: np.ndarray, field_bits: int) -> bool:
    """True if no word has a bit above its last full field (always true of sums of honest packings)."""
    used = field_bits * fields_per_word(field_bits)
    return used == WORD_BITS or not np.any(np.asarray(words, dtype=np.uint64) >> np.uint64(used))


class BitPack(BaseStage):
    """Send a ±scale vector as its bits, packed r = ceil(log2(K + 1)) bits per coordinate; decode the mean.

    Args:
        scale: the PUBLIC scale s > 0 every client's coordinates equal ±s (what ``SignBinarize`` with the
            same ``scale`` produces, or FedBAT with a shared public alpha). Compared at float32
            precision (the wire's): a coordinate must equal float32(s) or -float32(s).
        dim: the public model size d (optional): if given, encode refuses other sizes; if None it is
            learned from the first encoded update (every client then must send the same d).

    Inside a Pipeline the stage sees [x, 1]: x in {-s, +s}^d and the relative weight, which must be
    exactly 1 (``uniform_weights = True`` makes the pipeline give every client r = 1). Encode sends
    the d + 1 bits [x > 0, 1] packed into ceil((d + 1) / floor(32 / r)) uint32 words (layout in
    ``pack_fields``), K = the group size bound by ``bind`` (the pipeline's largest group). Decode of a
    group's word sum returns [s (2 S_j - n), n], S_j the number of +s at coordinate j and n the weight
    field's sum (the number of contributors), so the pipeline's division by n gives the mean of the
    clients' ±s vectors, exactly (float32(s) times a ratio of integers, in float64).

    Guarantee: for a group of at most K clients, decode(sum of encodes mod 2^32) is exactly the sum of
    the clients' [x, 1] vectors. Refuses (ConfigurationError): a coordinate other than ±s, a weight other
    than 1, a real-valued input of the wrong length; (IncompatibleStagesError) a sum of more than K
    clients. The server learns per coordinate the vote count S_j (as any secure sum of signs does).
    Decode also rejects sums no set of honest clients could produce (weight field != count, a count
    above n, a non-zero padding field) with ProtocolError; a malicious client can still set any bits
    it likes in its own fields (secure aggregation validates no input).

    HeSum (BFV) is refused: it needs each group sum to fit ``bits`` signed bits, which full packed
    words do not (their sums wrap mod 2^32 by design). Use Plaintext, SecAgg or SecAggPlus.

    References: Bonawitz et al., Practical Secure Aggregation, CCS 2017 (sums mod 2^32);
        Bernstein et al., signSGD with Majority Vote, ICLR 2019 (vote counts);
        Li et al., FedBAT, ICML 2024, and docs/methods/fedbat.md section 4.4, option (a) (bit sums in
        r = ceil(log2(K+1)) bits).
    """

    name: ClassVar[str] = "bitpack"
    output: ClassVar[str] = "ring"
    uniform_weights: ClassVar[bool] = True
    packed: ClassVar[bool] = True  # several fields per word: only protocols that sum words mod 2^32

    def __init__(self, scale: float, *, dim: int | None = None) -> None:
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale)
                and 0 < scale <= float(np.finfo(np.float32).max) and np.float32(scale) > 0):
            raise ConfigurationError(
                f"BitPack(scale={scale!r}): scale must be a finite number > 0 (float32-representable)")
        if dim is not None and not (isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1):
            raise ConfigurationError(f"BitPack(dim={dim!r}): dim must be an int >= 1, or None")
        self.scale = float(scale)
        self.dim = dim
        self.group_size: int | None = None
        self.field_bits: int | None = None

    @property
    def wire_scale(self) -> float:
        """The scale as it travels and is compared: float32(scale), as a float64."""
        return float(np.float32(self.scale))

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> BitPack:
        if not (isinstance(group_size, (int, np.integer)) and not isinstance(group_size, bool) and group_size >= 1):
            raise ConfigurationError(f"BitPack.bind(group_size={group_size!r}) must be an int >= 1")
        field_bits = int(group_size).bit_length()  # = ceil(log2(K + 1)): field sums <= K < 2^r
        if field_bits > WORD_BITS:
            raise IncompatibleStagesError(
                f"BitPack: groups of {group_size} need {field_bits}-bit fields, more than a {WORD_BITS}-bit word; "
                "use smaller groups (grouping buckets)"
            )
        configured = BitPack(self.scale, dim=self.dim)
        configured.group_size, configured.field_bits = int(group_size), field_bits
        return configured

    def _configured(self) -> tuple[int, int]:
        if self.group_size is None or self.field_bits is None:
            raise ConfigurationError("BitPack is configured by a Pipeline (or .bind()); use it inside one")
        return self.group_size, self.field_bits

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        _, field_bits = self._configured()
        values = update.values
        if values.dtype.kind != "f" or values.size < 2:
            raise ConfigurationError(
                "BitPack takes real vectors [x, weight] of length >= 2 (a ±scale update with the pipeline's weight "
                "appended); put it last, after SignBinarize(scale=...)"
            )
        self._check_dim(values.size - 1)
        v = values.astype(np.float32)
        if v[-1] != 1.0:
            raise ConfigurationError(
                f"BitPack: client {update.client_id} has relative weight {float(v[-1])!r}, not 1; a bit-sum needs "
                "uniform weights (inside a Pipeline BitPack sets them)"
            )
        x, s = v[:-1], np.float32(self.scale)
        plus = x == s
        if not np.all(plus | (x == -s)):
            bad = x[~(plus | (x == -s))]
            raise ConfigurationError(
                f"BitPack(scale={self.scale:g}): client {update.client_id} has {bad.size} coordinate(s) that are not "
                f"±scale (e.g. {float(bad[0]):g}); binarize with the same PUBLIC scale first "
                f"(SignBinarize(scale={self.scale:g})); a per-client scale cannot be bit-summed"
            )
        bits = np.append(plus, True).astype(np.uint8)
        return update.replace(pack_fields(bits, field_bits))

    def _check_dim(self, d: int) -> None:
        if self.dim is None:
            self.dim = d  # the public model size, the same for every client
        elif d != self.dim:
            raise ConfigurationError(f"BitPack: got a vector of {d} coordinates, expected d = {self.dim}")

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        group_size, field_bits = self._configured()
        if count > group_size:
            raise IncompatibleStagesError(
                f"BitPack was sized for groups of {group_size} ({field_bits}-bit fields) but got a sum of {count}"
            )
        words = np.asarray(total)
        if words.ndim != 1 or words.dtype.kind != "u":
            raise ConfigurationError(
                f"BitPack.decode takes 1-D unsigned words, got {words.dtype} of shape {words.shape}")
        fields = unpack_fields(words, field_bits)
        if self.dim is not None:
            d = self.dim
            if words.size != words_for(d + 1, field_bits):
                raise ConfigurationError(
                    f"BitPack: d = {d} packs into {words_for(d + 1, field_bits)} words, got a sum of {words.size}")
        else:  # the weight field is the last non-zero one (n >= 1 contributor; padding fields are zero)
            nonzero = np.flatnonzero(fields)
            if nonzero.size == 0:
                raise ProtocolError("BitPack: the group sum holds no contributor (weight field 0)")
            d = int(nonzero[-1])
        sums, n = fields[:d], int(fields[d])
        if (n != count or np.any(fields[d + 1:]) or (sums.size and sums.max() > n)
                or not high_bits_clear(words, field_bits)):
            raise ProtocolError(
                f"BitPack: the group sum is not a sum of {count} honest bit vectors (weight field {n}); "
                "a client sent fields other than single bits"
            )
        return np.append(self.wire_scale * (2.0 * sums - n), float(n))

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=max(self.wire_scale, 1.0), l2=math.inf)  # one client's decoded [±s, 1]

    def measurements(self) -> dict[str, float]:
        if self.field_bits is None:
            return {}
        f = fields_per_word(self.field_bits)
        out = {f"{self.name}/bits_per_coordinate": float(self.field_bits), f"{self.name}/fields_per_word": float(f),
               f"{self.name}/group_size": float(self.group_size), f"{self.name}/scale": self.scale}
        if self.dim is not None:
            words = words_for(self.dim + 1, self.field_bits)
            out.update({f"{self.name}/words": float(words),
                        f"{self.name}/compression": (self.dim + 1) / words})  # vs one 32-bit word per coordinate
        return out

    def __repr__(self) -> str:
        return f"BitPack(scale={self.scale:g}, bits_per_coordinate={self.field_bits}, group_size={self.group_size})"
