"""Low-bit stochastic quantization of a client's update (QSGD levels, as FedPAQ sends them)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update


class LowBitQuantize(BaseStage):
    """x -> ||x||_2 * sign(x) * l / s, with l the unbiased stochastic rounding of s |x| / ||x||_2.

    Args:
        bits: bits per coordinate on the wire, sign included; s = 2^(bits-1) - 1 levels (bits >= 2).

    Guarantee: E[out] = x (unbiased, the rounding uses the experiment rng); each coordinate takes
    one of 2s + 1 values, so the upload is ``bits`` per coordinate plus one 32-bit norm. Decode is
    the identity (the server receives the dequantized values; the wire here stays float32).

    References: Alistarh et al., QSGD, NeurIPS 2017; Reisizadeh et al., FedPAQ, AISTATS 2020.
    """

    name: ClassVar[str] = "low_bit"

    def __init__(self, bits: int = 4) -> None:
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ConfigurationError(f"LowBitQuantize(bits={bits!r}): must be an int in 2..16")
        self.bits = bits
        self.levels = (1 << (bits - 1)) - 1

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        x = update.values.astype(np.float64)
        norm = float(np.linalg.norm(x))
        if norm == 0:
            return update.replace(np.zeros_like(update.values, dtype=np.float32))
        scaled = np.abs(x) / norm * self.levels
        level = np.floor(scaled + rng.random(x.size))  # P(round up) = frac: unbiased
        return update.replace((norm * np.sign(x) * level / self.levels).astype(np.float32))

    def value_bound(self, bound_in: Bounds) -> Bounds:
        # |out_i| <= ||x|| * ceil(s |x_i| / ||x||) / s <= |x_i| + ||x|| / s
        linf = bound_in.linf + bound_in.l2 / self.levels if math.isfinite(bound_in.l2) else math.inf
        return Bounds(linf=linf, l2=math.inf)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/bits_per_coordinate": float(self.bits)}

    def __repr__(self) -> str:
        return f"LowBitQuantize(bits={self.bits})"
