"""Inner Product Manipulation (IPM): every Byzantine client sends -epsilon times the honest mean."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, real_option, tile


class InnerProductManipulation(UpdateAttack):
    """All f Byzantine clients send b = -epsilon * mean(honest).

    The aim is a negative inner product between the aggregate and the true gradient, so that gradient
    descent stops making progress. Against the plain mean of n = n_h + f rows the aggregate is
    mean(honest) * (n_h - f * epsilon) / n. A small epsilon keeps b close to the honest cloud (it passes
    distance-based rules such as Krum); a large epsilon pushes coordinate-wise rules (median, trimmed mean)
    to the edge of the honest values in the direction opposite to the mean.

    Args:
        epsilon: the scale, > 0 (default 0.1: FLPoison's default and the paper's small-epsilon setting,
            used against Krum).

    Guarantee: <b, mean(honest)> = -epsilon * ||mean(honest)||^2 < 0 (for a non-zero mean); all f rows equal.

    Where definitions differ: the formula is the same everywhere, only the default epsilon changes:
        ByzFL ``InnerProductManipulation(tau=2.0)`` (its README example uses 3.0), Blades ``IPMAdversary``
        scale 1.0 (its configs use 0.1 and 100), FLPoison 0.1. Xie et al. use a small epsilon (0.1)
        against Krum and a large one against median-type rules. ``SignFlip(scale)`` computes the same
        vector.

    References: Xie, Koyejo, Gupta, Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
        Manipulation, UAI 2019 (PMLR 115, 2020).
    """

    name: ClassVar[str] = "ipm"
    strength: ClassVar[str] = "epsilon"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = real_option("InnerProductManipulation", "epsilon", epsilon, low=0.0, strict=True)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        return tile(-self.epsilon * honest.mean(axis=0), f)
