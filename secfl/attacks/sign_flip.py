"""SignFlip: every Byzantine client sends the negated honest mean."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, real_option, tile


class SignFlip(UpdateAttack):
    """Each Byzantine client sends b = -scale * mean(honest).

    Args:
        scale: the factor on the negated mean (default 1.0, ByzFL's SignFlipping); > 0.

    Definitions differ between libraries:
        - ByzFL ``SignFlipping()``: -mean(honest), omniscient, all f rows equal. This class with scale=1.
        - FLPoison ``SignFlipping`` and Blades ``SignFlipAdversary`` flip the attacker's OWN update (Blades
          negates the gradients inside local training), which needs local training and is not an
          omniscient update attack; it is not what this class computes.
        - With scale = epsilon this equals ``InnerProductManipulation(epsilon)``; the two names are kept
          because the literature uses both with different default strengths (1 vs 0.1).

    Guarantee: against the plain mean of all n = n_h + f rows the aggregate is mean(honest) * (n_h - f*scale) / n,
        which points against the honest mean once f * scale > n_h. Robust rules usually discard it when
        the honest mean is large next to the honest spread; it is a baseline, not a strong attack.

    References: ByzFL's SignFlipping (González et al., ByzFL: Research Framework for Robust Federated
        Learning, arXiv:2505.24802); used in ByzFL's benchmark as one of its three worst-case attacks.
    """

    name: ClassVar[str] = "sign_flip"
    strength: ClassVar[str] = "scale"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = real_option("SignFlip", "scale", scale, low=0.0, strict=True)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        return tile(-self.scale * honest.mean(axis=0), f)
