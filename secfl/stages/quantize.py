"""Fixed-point quantization into the ring Z_2^b with unbiased stochastic rounding.

The number of bits is derived, never guessed: from the propagated per-coordinate bound B, the
scale s and the group size n, b = ceil(log2(2 n ceil(B s) + 1)), so a sum over a group can never
wrap. Values are clamped to [-B, B] first, which makes that a guarantee rather than a likelihood.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.hazmat import ring
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

MAX_BITS = 62
_BLOCK = 1 << 18  # coordinates quantized per pass (a 2 MiB float64 scratch, fewer Python-level calls)


def _top(hi: float) -> float:
    """The clamp's upper end in units of a step: hi, or the few ulps below it that keep floor(y + u 2^-32)
    at most ceil(hi) once the float64 sum y 2^32 + u rounds (it can round up onto ceil(hi) + 1 when
    ceil(hi) >= 2^21, where the ulp of y 2^32 exceeds 1). Moves the clamp by at most a few ulps of hi."""
    top = math.ceil(hi)
    while math.floor((hi * 2.0**32 + (2.0**32 - 1)) * 2.0**-32) > top:
        hi = math.nextafter(hi, 0.0)
    return hi


class Quantize(BaseStage):
    """Map real values to integers round(v * scale) embedded in Z_2^b (uint32 words for b <= 32, else uint64).

    Args:
        scale: fixed-point scale s > 0 (the step is 1/s).
        bits: force a ring size; construction fails if it is smaller than the derived one.
        bound: clamp values to [-bound, bound]; defaults to the bound propagated from earlier stages.

    Guarantee: E[decode(encode(v))] = clamp(v) up to (2^-32 + 2^-50 ceil(B s)) of a step (stochastic
    rounding with 32-bit uniforms drawn from ``rng``, and float64 rounding: about 2^-19 of a step at most
    in any 32-bit ring, below 2^-29 when ceil(B s) <= 2^20); every encoded word is a residue of an integer
    in [-ceil(B s), ceil(B s)]; each coordinate of a decoded sum of n inputs is within n/s of the sum
    of the clamped inputs; sums of up to the bound group size never wrap. ``rng`` is experiment
    randomness (a numpy Generator; its bit generator supplies the uniforms), not a cryptographic source.

    References: Bonawitz et al., Practical Secure Aggregation for Privacy-Preserving ML, CCS 2017
        (fixed-point encoding); Gupta et al., Deep Learning with Limited Numerical Precision, ICML 2015
        (stochastic rounding).
    """

    name: ClassVar[str] = "quantize"
    output: ClassVar[str] = "ring"

    def __init__(self, scale: float = 2.0**16, bits: int | None = None, bound: float | None = None) -> None:
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"Quantize(scale={scale!r}): scale must be a finite number > 0")
        if bits is not None and not (isinstance(bits, int) and 1 <= bits <= MAX_BITS):
            raise ConfigurationError(f"Quantize(bits={bits!r}): bits must be an int in 1..{MAX_BITS}")
        if bound is not None and not (isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0):
            raise ConfigurationError(f"Quantize(bound={bound!r}): bound must be a finite number > 0")
        self.scale = float(scale)
        self.bits = bits
        self.bound = None if bound is None else float(bound)
        self.group_size: int | None = None

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> Quantize:
        bound = self.bound if self.bound is not None else bound_in.linf
        if not math.isfinite(bound):
            raise IncompatibleStagesError(
                "Quantize needs bounded inputs: put L2Clip(norm=C) before it or give Quantize(bound=B)"
            )
        required = ring.bits_for_sum(math.ceil(bound * self.scale), group_size)
        if required > MAX_BITS:
            raise IncompatibleStagesError(
                f"Quantize needs {required} bits for bound {bound:g} x scale {self.scale:g} x group size "
                f"{group_size}, more than {MAX_BITS}; lower the scale, the clip norm or the group size"
            )
        if self.bits is not None and self.bits < required:
            raise IncompatibleStagesError(
                f"Quantize(bits={self.bits}) is too small: bound {bound:g} x scale {self.scale:g} x group "
                f"size {group_size} needs {required} bits; raise bits, or lower the scale or clip norm"
            )
        bound_stage = Quantize(self.scale, self.bits or required, bound)
        bound_stage.group_size = group_size
        return bound_stage

    def _configured(self) -> tuple[float, int, int]:
        if self.bound is None or self.bits is None or self.group_size is None:
            raise ConfigurationError("Quantize is configured by a Pipeline (or .bind()); use it inside one")
        return self.bound, self.bits, self.group_size

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        bound, bits, _ = self._configured()
        values = update.values
        dtype = ring.word_dtype(bits)
        words = np.empty(values.size, dtype)
        # Stochastic rounding floor(y + u / 2^32), y = clamp(v) s, u a uniform uint32 from rng (32 bits of
        # its bit generator's raw 64-bit output each), computed in float64 as floor((y 2^32 + u) 2^-32):
        # the power-of-two scalings are exact, so the sum's rounding is the only error. floor lands in
        # [-ceil(B s), ceil(B s)], which the signed word holds; its two's complement is the residue mod the
        # word, then reduced mod 2^b. Blocks bound the scratch.
        lo, hi = -bound * self.scale, _top(bound * self.scale)
        up, down = self.scale * 2.0**32, 2.0**-32
        # fl(v s) 2^32 = fl(v 2^32 s) and rounding is monotone, so clipping after scaling is clipping first;
        # when every value is already inside (as after L2Clip), the clip pass is skipped
        inside = values.size == 0 or lo <= float(values.min()) * self.scale and float(values.max()) * self.scale <= hi
        signed = words.view(np.int32 if dtype == np.uint32 else np.int64)
        scratch = np.empty(min(_BLOCK, values.size), dtype=np.float64)
        draw = rng.bit_generator.random_raw
        for start in range(0, values.size, _BLOCK):
            stop = min(start + _BLOCK, values.size)
            y = scratch[:stop - start]
            np.copyto(y, values[start:stop])
            y *= up
            if not inside:
                np.clip(y, lo * 2.0**32, hi * 2.0**32, out=y)
            np.add(y, draw((y.size + 1) // 2).view(np.uint32)[:y.size], out=y)
            y *= down
            np.floor(y, out=y)
            np.copyto(signed[start:stop], y, casting="unsafe")
        if bits < 8 * dtype.itemsize:
            words &= dtype.type((1 << bits) - 1)
        return update.replace(words)

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        _, bits, group_size = self._configured()
        if count > group_size:
            raise IncompatibleStagesError(
                f"Quantize was sized for groups of {group_size} but got a sum of {count}"
            )
        return ring.lift(total, bits).astype(np.float64) / self.scale

    def value_bound(self, bound_in: Bounds) -> Bounds:
        bound = self.bound if self.bound is not None else bound_in.linf
        return Bounds(linf=bound + 1.0 / self.scale, l2=math.inf)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/bits": float(self.bits or 0), f"{self.name}/scale": self.scale}

    def __repr__(self) -> str:
        return f"Quantize(scale={self.scale:g}, bits={self.bits}, bound={self.bound})"
