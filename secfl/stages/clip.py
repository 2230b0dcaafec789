"""L2 clipping: scale a client's update so its L2 norm is at most C."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update


class L2Clip(BaseStage):
    """Scale ``v`` to ``v * min(1, C / ||v||_2)``.

    Args:
        norm: the clip norm C > 0.

    Guarantee: every encoded update has ||v||_2 <= C (hence |v_i| <= C), which bounds the L2
    sensitivity of a sum for DP and the per-coordinate range for ring sizing. Decode is the identity.

    References: Abadi et al., Deep Learning with Differential Privacy, CCS 2016;
        McMahan et al., Learning Differentially Private Recurrent Language Models, ICLR 2018.
    """

    name: ClassVar[str] = "l2clip"

    def __init__(self, norm: float) -> None:
        if not (isinstance(norm, (int, float)) and math.isfinite(norm) and norm > 0):
            raise ConfigurationError(f"L2Clip(norm={norm!r}): norm must be a finite number > 0")
        self.norm = float(norm)

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        values = update.values.astype(np.float64)
        length = float(np.linalg.norm(values))
        if length > self.norm:
            values = values * (self.norm / length)
        return update.replace(values.astype(np.float32))

    def value_bound(self, bound_in: Bounds) -> Bounds:
        # float32 rounding may lift the norm by a relative 2^-24 per coordinate; allow for it.
        slack = self.norm * (1 + 2.0**-20)
        return Bounds(linf=min(bound_in.linf, slack), l2=min(bound_in.l2, slack))

    def __repr__(self) -> str:
        return f"L2Clip(norm={self.norm})"
