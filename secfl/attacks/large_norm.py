"""LargeNorm: every Byzantine client sends a long vector opposite to the honest mean."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, real_option, tile


class LargeNorm(UpdateAttack):
    """All f Byzantine clients send b = -L * mean / ||mean||, a vector of length L against the honest mean.

    L = ``norm`` if given, else ``factor`` * max_i ||g_i|| (relative to the longest honest vector, so the
    attack scales with the updates). If the honest mean is exactly 0 the direction is -1/sqrt(d) in every
    coordinate (documented, deterministic).

    Args:
        factor: L as a multiple of the largest honest norm (default 100.0); > 0. Ignored when ``norm`` is set.
        norm: an absolute length L > 0 (default None: use ``factor``).

    Guarantee: ||b|| = L and b points against the honest mean; all f rows equal.

    It tests norm-based defences (clipping, norm filters) and shows how far one input moves a non-robust
    rule: against the plain mean the aggregate moves by f * L / n. ByzFL's ``Inf`` attack (+inf in every
    coordinate) is the limit; this class keeps values finite so that every stage downstream still runs.

    References: the "omniscient" attack in the experiments of Blanchard, El Mhamdi, Guerraoui, Stainer,
        Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent, NeurIPS 2017 (the
        Byzantine workers propose the opposite of the honest gradient, scaled up).
    """

    name: ClassVar[str] = "large_norm"

    def __init__(self, factor: float = 100.0, norm: float | None = None) -> None:
        self.factor = real_option("LargeNorm", "factor", factor, low=0.0, strict=True)
        self.norm = real_option("LargeNorm", "norm", norm, low=0.0, strict=True, allow_none=True)

    def strength_parameter(self) -> str:
        return "norm" if self.norm is not None else "factor"

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        mean = honest.mean(axis=0)
        length = self.norm if self.norm is not None else self.factor * float(np.linalg.norm(honest, axis=1).max())
        mean_norm = float(np.linalg.norm(mean))
        direction = -mean / mean_norm if mean_norm > 0 else np.full(mean.shape, -1.0 / np.sqrt(mean.size))
        return tile(length * direction, f)
