"""A Little Is Enough (ALIE): every Byzantine client sends mean - z * std of the honest vectors."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, choice_option, honest_std, real_option, tile
from secfl.exceptions import ConfigurationError

Z_FORMULAS = ("paper", "blades")


def alie_z(n: int, f: int, formula: str = "paper") -> float:
    """Baruch et al.'s z_max for n clients of which f are Byzantine.

    s = floor(n/2 + 1) - f is the number of honest "supporters" the attacker needs to sway a majority, and

        "paper":  z = Phi^{-1}((n - s) / n)              (Baruch et al., Algorithm 1)
        "blades": z = Phi^{-1}((n - f - s) / (n - f))    (Blades, FLPoison, Karimireddy et al.'s code)

    e.g. n = 20, f = 4: s = 7, paper z = Phi^{-1}(0.65) = 0.385, blades z = Phi^{-1}(0.5625) = 0.157.

    Raises:
        ConfigurationError: f < 1, n <= f, an unknown formula, or a probability outside (0, 1) (f > n/2, or
            n = 2 with the "blades" formula): pass a fixed z instead.
    """
    for key, value in (("n", n), ("f", f)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigurationError(f"alie_z({key}={value!r}): must be an int >= 1")
    if n <= f:
        raise ConfigurationError(f"alie_z(n={n}, f={f}): needs n > f (at least one honest client)")
    choice_option("alie_z", "formula", formula, Z_FORMULAS)
    s = math.floor(n / 2 + 1) - f
    p = (n - s) / n if formula == "paper" else (n - f - s) / (n - f)
    if not 0.0 < p < 1.0:
        raise ConfigurationError(f"alie_z(n={n}, f={f}, formula={formula!r}): Phi^-1({p:g}) is not finite "
                                 "(the formula needs f <= n/2); pass a fixed z, e.g. z=1.5")
    return NormalDist().inv_cdf(p)


class ALittleIsEnough(UpdateAttack):
    """All f Byzantine clients send b = mean(honest) + sign * z * std(honest, ddof), coordinate-wise.

    The shift stays within z standard deviations of the honest mean in every coordinate, so rules that
    trust the majority per coordinate (median, trimmed mean) or by distance (Krum, Bulyan) accept it,
    while the bias accumulates over rounds.

    Args:
        z: the number of standard deviations. None (default): Baruch et al.'s z_max from n = n_h + f and f
            (see ``alie_z``), recomputed every call. A number: fixed (ByzFL's ALittleIsEnough uses 1.5, also
            the default of the authors' released code); must be >= 0.
        z_formula: "paper" (default) Phi^{-1}((n - s)/n) or "blades" Phi^{-1}((n - f - s)/(n - f)); only
            used when z is None.
        ddof: 0 (default) population std, as the authors' DriftAttack (mean - z * sqrt(var), read from a
            port of their code) and FLPoison; 1 for the sample std of ByzFL and Blades (torch.std). Needs
            n_h > ddof.
        sign: -1 (default) mean - z*std as in the authors' DriftAttack; +1 mean + z*std as in ByzFL, Blades
            and FLPoison. For coordinate-wise symmetric rules the two are mirror images.

    Guarantee: |b_j - mean_j| = z * std_j in every coordinate j (all f rows equal).

    Where definitions differ (same name, different attack):
        - ByzFL ``ALittleIsEnough(tau=1.5)``: mean + 1.5 * std(ddof=1). Here: z=1.5, ddof=1, sign=+1.
        - Blades ``ALIEAdversary``: mean + z * std(ddof=1) with the "blades" formula (0.157 at n=20, f=4).
        - FLPoison ``ALIE``: mean + z * std(ddof=0) with the "blades" formula.
        - The paper computes mu and sigma over the corrupted clients' own gradients (no omniscience);
          here, as in all three libraries, over the honest vectors of the round.
        The formula's z is small for small n (0.385 at n=20, f=4 with "paper"; 0.0 at n=12, f=2 with
        "blades"), which is why ByzFL fixes z = 1.5 and offers a line search (``Adaptive`` here).

    References: Baruch, Baruch, Goldberg, A Little Is Enough: Circumventing Defenses For Distributed
        Learning, NeurIPS 2019 (code: github.com/moranant/attacking_distributed_learning).
    """

    name: ClassVar[str] = "alie"
    strength: ClassVar[str] = "z"

    def __init__(self, z: float | None = None, z_formula: str = "paper", ddof: int = 0, sign: int = -1) -> None:
        self.z = real_option("ALittleIsEnough", "z", z, low=0.0, allow_none=True)
        self.z_formula = choice_option("ALittleIsEnough", "z_formula", z_formula, Z_FORMULAS)
        self.ddof = choice_option("ALittleIsEnough", "ddof", ddof, (0, 1))
        self.sign = choice_option("ALittleIsEnough", "sign", sign, (-1, 1))

    def resolved_strength(self, honest: np.ndarray, num_byzantine: int) -> float:
        if self.z is not None:
            return self.z
        return alie_z(honest.shape[0] + num_byzantine, num_byzantine, self.z_formula)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        z = self.resolved_strength(honest, f)
        std = honest_std(honest, self.ddof, "ALittleIsEnough")
        return tile(honest.mean(axis=0) + self.sign * z * std, f)
