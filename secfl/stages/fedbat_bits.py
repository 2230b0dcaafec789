"""FedBAT through a secure sum: bits for the binarized weights, narrow fixed-point fields for the rest.

With one PUBLIC step size alpha_l per layer and round (option (a), docs/methods/fedbat.md section 4), a
client's binarized weights alpha_l (2 b - 1) are known from its bits b alone, so the group needs only
the bit sums S, from which the server gets alpha_l (2 S - n). ``FedBatBits`` takes the client's update
in units of the public alpha, x = m / alpha_l at the binarized coordinates (anything else: biases, norm
parameters, and any extra coordinates the method appends), and

- binarizes each binarized coordinate: b = 1 with probability (1 + clip(x, -1, 1)) / 2, so E[2b - 1] = x
  for |x| <= 1 (FedBAT's stochastic binarizer B(m; alpha) / alpha);
- packs the bits (and the weight bit r = 1) into r = ceil(log2(K + 1))-bit fields, floor(32 / r) per
  uint32 word (``bitpack.pack_fields``): a field's sum over <= K clients never carries into the next;
- encodes every other coordinate in fixed point, clamped to [-bound, bound], offset to be non-negative,
  in fields of ceil(log2(2 K ceil(bound scale) + 1)) bits, packed the same way.

Decode returns, per group, [2 S - n at the binarized coordinates, the sum of the other coordinates, n]:
the pipeline's division by n gives the mean of the clients' signs (times alpha_l on the server, see
``secfl.methods.fedbat.secure``) and the mean of the rest.

Threat model: that of the secure sum underneath (SecAgg / SecAgg+ sum the words mod 2^32, masks
included). The server learns per coordinate the group's vote count S and the rest's group sum, nothing
per client. A malicious client can set any bits and fields of its own (secure aggregation validates no
input); decode rejects sums that no set of honest clients could produce (ProtocolError). The stochastic
binarization uses the experiment's RNG: it is part of the update's distribution, not a secret.

The tension with a 1-bit uplink (documented in the README): a secure sum over groups of K costs r bits
per binarized weight, not 1 (r = 4 for K <= 15, so 8x below 32-bit masked FedAvg rather than 32x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError, ProtocolError
from secfl.stages.base import BaseStage
from secfl.stages.bitpack import WORD_BITS, high_bits_clear, pack_fields, unpack_fields, words_for
from secfl.stages.fedbat_pack import check_segments
from secfl.types import Bounds, Update


class FedBatBits(BaseStage):
    """Binarize the segments to bits and fixed-point the rest, in packed narrow fields (see module doc).

    Args:
        segments: ``[start, stop)`` of each binarized weight in the update (a scenario fills it from
            the model: ``fedbat.binarized_segments``).
        scale: fixed-point scale s of the other coordinates (step 1/s).
        bound: the other coordinates are clamped to [-bound, bound] (and to the propagated bound).

    Guarantee: for a group of at most K clients (``bind``), decode(sum of encodes mod 2^32) is exactly
    [sum_k (2 b_k - 1), sum_k round_k(clamp(v_k)), n] with E[2 b - 1] = clip(x, -1, 1) and stochastic
    rounding of the rest to the 1/s grid (unbiased). Refuses: a weight other than 1, an update shorter
    than the last segment, group sums of more than K clients, and (ProtocolError) sums that are not a
    sum of n honest encodings.
    """

    name: ClassVar[str] = "fedbat_bits"
    output: ClassVar[str] = "ring"
    uniform_weights: ClassVar[bool] = True
    packed: ClassVar[bool] = True

    def __init__(self, segments: Sequence[Sequence[int]], *, scale: float = 2.0**16, bound: float = 1.0) -> None:
        self.segments = check_segments(segments, "FedBatBits")
        for key, value in (("scale", scale), ("bound", bound)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and value > 0):
                raise ConfigurationError(f"FedBatBits({key}={value!r}): {key} must be a finite number > 0")
        self.scale, self.bound = float(scale), float(bound)
        self.group_size: int | None = None
        self.bit_width: int | None = None
        self.rest_width: int | None = None
        self.size: int | None = None  # the update's length without the weight, learned from the first encode

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> FedBatBits:
        if not (isinstance(group_size, (int, np.integer)) and not isinstance(group_size, bool) and group_size >= 1):
            raise ConfigurationError(f"FedBatBits.bind(group_size={group_size!r}) must be an int >= 1")
        bound = min(self.bound, bound_in.linf)
        bit_width = int(group_size).bit_length()  # ceil(log2(K + 1)): a field's sum <= K < 2^r
        rest_width = (2 * int(group_size) * math.ceil(bound * self.scale)).bit_length()
        if max(bit_width, rest_width) > WORD_BITS:
            raise IncompatibleStagesError(
                f"FedBatBits: groups of {group_size} with bound {bound:g} x scale {self.scale:g} need "
                f"{max(bit_width, rest_width)}-bit fields, more than a {WORD_BITS}-bit word; lower the scale or the "
                "bound, or use smaller groups (grouping buckets)")
        configured = FedBatBits(self.segments, scale=self.scale, bound=bound)
        configured.group_size, configured.bit_width, configured.rest_width = int(group_size), bit_width, rest_width
        return configured

    def _configured(self) -> tuple[int, int, int]:
        if self.group_size is None or self.bit_width is None or self.rest_width is None:
            raise ConfigurationError("FedBatBits is configured by a Pipeline (or .bind()); use it inside one")
        return self.group_size, self.bit_width, self.rest_width

    @property
    def offset(self) -> int:
        """The non-negative shift of the fixed-point fields: ceil(bound * scale)."""
        return math.ceil(self.bound * self.scale)

    def _mask(self, size: int) -> np.ndarray:
        """True at the binarized coordinates of an update of ``size`` values (weight excluded)."""
        if self.size is None:
            if self.segments and self.segments[-1][1] > size:
                raise ConfigurationError(
                    f"FedBatBits: segment {list(self.segments[-1])} is beyond an update of {size} values")
            self.size = size
        elif size != self.size:
            raise ConfigurationError(f"FedBatBits: got an update of {size} values, expected {self.size}")
        mask = np.zeros(size, dtype=bool)
        for start, stop in self.segments:
            mask[start:stop] = True
        return mask

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        _, bit_width, rest_width = self._configured()
        values = update.values
        if values.dtype.kind != "f" or values.size < 2:
            raise ConfigurationError("FedBatBits takes real vectors [x, weight]; put it last in the stages")
        if np.float32(values[-1]) != 1.0:
            raise ConfigurationError(
                f"FedBatBits: client {update.client_id} has relative weight {float(values[-1])!r}, not 1; a bit-sum "
                "needs uniform weights (inside a Pipeline the stage sets them)")
        x = values[:-1].astype(np.float64)
        mask = self._mask(x.size)
        plus = rng.random(int(mask.sum())) < (1.0 + np.clip(x[mask], -1.0, 1.0)) / 2.0
        bits = np.append(plus, True).astype(np.uint8)
        rest = np.clip(x[~mask], -self.bound, self.bound) * self.scale + self.offset  # in [0, 2 offset]
        rest = np.floor(rest + rng.random(rest.size)).astype(np.int64)  # unbiased stochastic rounding
        words = np.concatenate([pack_fields(bits, bit_width), pack_fields(rest, rest_width)])
        return update.replace(words)

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        group_size, bit_width, rest_width = self._configured()
        if count > group_size:
            raise IncompatibleStagesError(f"FedBatBits was sized for groups of {group_size} but got a sum of {count}")
        if self.size is None:
            raise ConfigurationError("FedBatBits.decode before any encode: the update's size is not known yet")
        words = np.asarray(total)
        mask = self._mask(self.size)
        n_bits, n_rest = int(mask.sum()), int((~mask).sum())
        split = words_for(n_bits + 1, bit_width)
        if words.ndim != 1 or words.dtype.kind != "u" or words.size != split + words_for(n_rest, rest_width):
            raise ProtocolError("FedBatBits: the group sum does not have the encoding's shape")
        bit_fields = unpack_fields(words[:split], bit_width)
        rest_fields = unpack_fields(words[split:], rest_width)
        sums, n = bit_fields[:n_bits], int(bit_fields[n_bits])
        if (n != count or np.any(bit_fields[n_bits + 1:]) or np.any(rest_fields[n_rest:])
                or (n_bits and sums.max() > n) or (n_rest and rest_fields[:n_rest].max() > 2 * n * self.offset)
                or not (high_bits_clear(words[:split], bit_width) and high_bits_clear(words[split:], rest_width))):
            raise ProtocolError(f"FedBatBits: the group sum is not a sum of {count} honest encodings")
        out = np.empty(self.size + 1, dtype=np.float64)
        out[:-1][mask] = 2.0 * sums - n
        out[:-1][~mask] = (rest_fields[:n_rest] - n * self.offset) / self.scale
        out[-1] = float(n)
        return out

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=max(1.0, self.bound + 1.0 / self.scale), l2=math.inf)

    def measurements(self) -> dict[str, float]:
        if self.bit_width is None:
            return {}
        out = {f"{self.name}/bits_per_binarized": float(self.bit_width),
               f"{self.name}/bits_per_other": float(self.rest_width), f"{self.name}/group_size": float(self.group_size)}
        if self.size is not None:
            n_bits = sum(stop - start for start, stop in self.segments)
            words = words_for(n_bits + 1, self.bit_width) + words_for(self.size - n_bits, self.rest_width)
            out[f"{self.name}/words"] = float(words)
            out[f"{self.name}/compression"] = (self.size + 1) / words  # vs one 32-bit word per coordinate
        return out

    def __repr__(self) -> str:
        return (f"FedBatBits(segments={len(self.segments)}, bits={self.bit_width}, other_bits={self.rest_width}, "
                f"group_size={self.group_size})")
