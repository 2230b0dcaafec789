"""Min-Max and Min-Sum (Shejwalkar & Houmansadr, NDSS 2021): the largest push along a fixed direction
that still looks like an honest vector by distances.

Both send m = mean(honest) + gamma * p for a perturbation direction p and the largest gamma >= 0 such that

    Min-Max:  max_i ||m - g_i||^2        <= max_{i,j} ||g_i - g_j||^2
    Min-Sum:  sum_i ||m - g_i||^2        <= max_i sum_j ||g_i - g_j||^2

(g_i the honest vectors). gamma = 0 is always feasible (the mean is inside both bounds) and each
constraint is convex in gamma, so the feasible gammas form an interval [0, gamma_max].
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.distances import squared_distances
from secfl.attacks.base import UpdateAttack, check_honest, choice_option, honest_std, real_option, tile

DEVIATIONS = ("std", "unit", "sign")
SEARCHES = ("binary", "exact")
_MAX_STEPS = 1000  # the binary search needs about log2(gamma_init / tol) + 2 steps (~22 at the defaults)


def perturbation(honest: np.ndarray, deviation: str) -> np.ndarray:
    """p: "std" -std(honest, ddof=1); "unit" -mean/||mean|| (0 if mean = 0); "sign" -sign(mean)."""
    mean = honest.mean(axis=0)
    if deviation == "std":
        return -honest_std(honest, 1, "MinMax/MinSum(deviation='std')")
    if deviation == "unit":
        norm = float(np.linalg.norm(mean))
        return -mean / norm if norm > 0 else np.zeros_like(mean)
    return -np.sign(mean)


class _MinBase(UpdateAttack):
    """Shared search; subclasses define the bound and the quadratic of the constraint."""

    strength: ClassVar[str] = "gamma"
    min_honest: ClassVar[int] = 2

    def __init__(self, deviation: str = "std", gamma: float | None = None, search: str = "binary",
                 gamma_init: float = 10.0, tol: float = 1e-5) -> None:
        owner = type(self).__name__
        self.deviation = choice_option(owner, "deviation", deviation, DEVIATIONS)
        self.gamma = real_option(owner, "gamma", gamma, low=0.0, allow_none=True)
        self.search = choice_option(owner, "search", search, SEARCHES)
        self.gamma_init = real_option(owner, "gamma_init", gamma_init, low=0.0, strict=True)
        self.tol = real_option(owner, "tol", tol, low=0.0, strict=True)

    # --- the constraint q(gamma) = a2 * gamma^2 + 2 * a1 * gamma + a0 <= 0, one row per term ------------

    def _quadratics(self, honest: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def solve_gamma(self, honest: np.ndarray) -> float:
        """The gamma this attack uses on ``honest`` [n_h, d] (the fixed ``gamma`` if one was given)."""
        honest = check_honest(self.name, honest, self.min_honest)
        if self.gamma is not None:
            return self.gamma
        return self._solve(honest, perturbation(honest, self.deviation))

    def _solve(self, honest: np.ndarray, p: np.ndarray) -> float:
        a2, a1, a0 = self._quadratics(honest, p)
        if not np.any(a2 > 0):
            return 0.0  # p = 0 (e.g. identical honest vectors): every gamma gives the mean
        if self.search == "exact":
            return _largest_root(a2, a1, a0)

        def feasible(gamma: float) -> bool:
            return bool(np.all(a2 * gamma * gamma + 2.0 * a1 * gamma + a0 <= 0.0))

        # The authors' search (NDSS21-Model-Poisoning, our_attack_dist / our_attack_score), also FLPoison's.
        gamma, step, best = self.gamma_init, self.gamma_init, 0.0
        for _ in range(_MAX_STEPS):
            if abs(best - gamma) <= self.tol:
                break
            if feasible(gamma):
                best, gamma = gamma, gamma + step / 2
            else:
                gamma = gamma - step / 2
            step /= 2
        return best

    def resolved_strength(self, honest: np.ndarray, num_byzantine: int) -> float:
        return self.solve_gamma(honest)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        p = perturbation(honest, self.deviation)
        gamma = self.gamma if self.gamma is not None else self._solve(honest, p)
        return tile(honest.mean(axis=0) + gamma * p, f)


def _largest_root(a2: np.ndarray, a1: np.ndarray, a0: np.ndarray) -> float:
    """max gamma >= 0 with a2 g^2 + 2 a1 g + a0 <= 0 on every row (a2 > 0; a0 <= 0 up to rounding)."""
    c = np.maximum(-a0, 0.0)  # clamp: gamma = 0 stays feasible even if rounding made a0 slightly positive
    disc = np.sqrt(a1 * a1 + a2 * c)
    # the positive root (disc - a1) / a2, written as c / (a1 + disc) where a1 > 0 to avoid cancellation
    roots = np.where(a1 > 0, c / np.where(a1 > 0, a1 + disc, 1.0), (disc - a1) / a2)
    return float(roots.min())


class MinMax(_MinBase):
    """m = mean(honest) + gamma * p with the largest gamma s.t. max_i ||m - g_i|| <= max_{i,j} ||g_i - g_j||.

    All f Byzantine clients send m. The Byzantine vector is no farther from any honest vector than the
    two farthest honest vectors are from each other, which defeats distance-based filters.

    Args:
        deviation: the perturbation p. "std" (default) -std(honest, ddof=1) coordinate-wise; "unit"
            -mean/||mean||; "sign" -sign(mean). The paper reports all three ("inverse std", "inverse unit
            vector", "inverse sign"); the authors' notebooks and FLPoison default to "unit".
        gamma: a fixed gamma >= 0 instead of the search (then no constraint is enforced; ``Adaptive``
            searches this knob against the aggregator, as the paper's AGR-tailored attacks do).
        search: "binary" (default): the authors' search. gamma starts at gamma_init with step gamma_init;
            each step moves by half the previous step, up when feasible, down otherwise, until the last
            feasible gamma and the current one differ by <= tol. It never returns more than 2 * gamma_init,
            so for "unit" (gamma in the units of the updates) a large true maximum is capped.
            "exact": the closed-form largest root of the per-row quadratic constraints (no cap, one pass).
        gamma_init: 10.0 (authors' code and FLPoison).
        tol: 1e-5 (authors' code and FLPoison).

    Where definitions differ: Blades' ``MinMaxAdversary`` bisects gamma on [0, 5] until the interval is
        < 0.01 with deviation std(ddof=1) and a strict "<" bound; FLPoison uses "unit" with the authors'
        search. Distances are Euclidean (the authors compare squared norms, the same constraint).

    Guarantee: max_i ||m - g_i|| <= max_{i,j} ||g_i - g_j|| (up to
        floating-point rounding in the constraint); the binary search's gamma is within 2 * tol below the
        largest feasible gamma (when that is < 2 * gamma_init), and "exact" returns the largest one.

    References: Shejwalkar, Houmansadr, Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
        Defenses for Federated Learning, NDSS 2021 (code: github.com/vrt1shjwlkr/NDSS21-Model-Poisoning).
    """

    name: ClassVar[str] = "min_max"

    def _quadratics(self, honest, p):
        a = honest.mean(axis=0) - honest  # m - g_i = a_i + gamma * p
        bound = float(squared_distances(honest).max())
        c = np.einsum("ij,ij->i", a, a)
        return np.full(c.shape, float(p @ p)), a @ p, c - bound


class MinSum(_MinBase):
    """m = mean(honest) + gamma * p with the largest gamma s.t. sum_i ||m - g_i||^2 <= max_i sum_j ||g_i - g_j||^2.

    All f Byzantine clients send m. Its sum of squared distances to the honest vectors is no larger than
    that of the worst honest vector, which defeats score-based filters such as Krum's.

    Args:
        deviation, gamma, search, gamma_init, tol: as ``MinMax``.
        bound: "max" (default) the paper's bound max_i sum_j ||g_i - g_j||^2 (also FLPoison's); "min" the
            bound of the authors' released notebooks (``our_attack_score``: min_i sum_j ||g_i - g_j||^2),
            stricter: the Byzantine vector then scores no worse than the BEST honest vector.

    Since sum_i (mean - g_i) = 0 the constraint is n_h * gamma^2 * ||p||^2 + sum_i ||mean - g_i||^2 <= bound.

    Guarantee: sum_i ||m - g_i||^2 <= the bound (up to floating-point rounding in the constraint); the
        binary search's gamma is within 2 * tol below the largest feasible gamma (when that is < 2 *
        gamma_init), and "exact" returns the largest one.

    References: Shejwalkar, Houmansadr, NDSS 2021 (see ``MinMax``).
    """

    name: ClassVar[str] = "min_sum"

    def __init__(self, deviation: str = "std", gamma: float | None = None, search: str = "binary",
                 gamma_init: float = 10.0, tol: float = 1e-5, bound: str = "max") -> None:
        super().__init__(deviation=deviation, gamma=gamma, search=search, gamma_init=gamma_init, tol=tol)
        self.bound = choice_option("MinSum", "bound", bound, ("max", "min"))

    def _quadratics(self, honest, p):
        a = honest.mean(axis=0) - honest
        scores = squared_distances(honest).sum(axis=1)
        bound = float(scores.max() if self.bound == "max" else scores.min())
        c = float(np.einsum("ij,ij->", a, a))
        return np.array([honest.shape[0] * float(p @ p)]), np.array([float((a @ p).sum())]), np.array([c - bound])
