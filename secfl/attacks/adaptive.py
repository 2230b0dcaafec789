"""Adaptive: line-search an attack's strength against the aggregator in use (ByzFL's "optimal" attacks)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from secfl.attacks.base import (AggregatorFn, UpdateAttack, check_honest, check_num_byzantine, check_rng,
                               choice_option, real_option)
from secfl.attacks.registry import build_attack, register
from secfl.exceptions import ConfigurationError

OBJECTIVES = ("distance", "inner_product")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...


@dataclass(frozen=True)
class SearchResult:
    """The outcome of one ``Adaptive.search``: the chosen strength, its damage, the aggregator calls made."""

    strength: float
    damage: float
    evaluations: int
    vectors: np.ndarray  # [f, d], the Byzantine rows at that strength


@register
class Adaptive(UpdateAttack):
    """The base attack at the strength s that maximises the damage to ``aggregator(honest ∪ byzantine)``.

    damage(s) = ||agg - mean(honest)||        (objective "distance", default; ByzFL's Optimal_IPM /
                                                Optimal_ALIE and Shejwalkar-Houmansadr's AGR-tailored attacks)
              = -<agg, mean(honest)>           (objective "inner_product"; Xie et al.'s goal for IPM)

    where agg = aggregator(concat(honest, byzantine(s))) (honest rows first, then the f Byzantine rows).
    The searched knob is the base attack's strength option: SignFlip ``scale``, GaussianAttack ``sigma``,
    ALittleIsEnough ``z``, InnerProductManipulation ``epsilon``, MinMax/MinSum ``gamma`` (fixed gamma, no
    distance constraint: the AGR-tailored variant), LargeNorm ``factor`` (or ``norm``). Mimic has none.

    Search, at most ``budget`` aggregator calls in total:
        1. the base attack as configured (its own default strength, e.g. ALIE's z from the formula), so
           the result never does less damage than the base attack;
        2. a geometric grid of G = max(2, (budget - 1) // 2) strengths over [low, high], by default
           [s0 / span, s0 * span] around the base's strength s0 (1.0 if s0 <= 0);
        3. golden-section refinement (on a log scale) between the grid neighbours of the best grid point,
           with the remaining calls.
    The best evaluated candidate is returned (ties: the earliest, so the base attack wins ties). Every
    evaluation uses the same random stream (one seed drawn from ``rng``), so randomised attacks are
    compared with common random numbers and the returned rows are exactly the evaluated ones.

    Args:
        attack: the base attack: a kind ("alie"), a spec ({"kind": "alie", "z": 1.5}) or an instance.
        budget: the maximum number of aggregator calls per round, int in [4, 1000] (default 30; ByzFL's
            optimal attacks use 20 evaluations).
        objective: "distance" (default) or "inner_product".
        low, high: the strength range of the grid (defaults from ``span``); 0 < low < high.
        span: the default range factor around the base strength (default 100.0, i.e. four decades).

    Guarantee: at most ``budget`` aggregator calls per round, and damage >= the base attack's damage at
        its configured strength (that candidate is always evaluated first).

    Requires ``aggregator`` at call time (any callable [n, d] -> [d]); the attack is then white-box.
    Where definitions differ: ByzFL's Optimal_* start at 0 with step 10, double the step while the
        objective improves and shrink it by 0.8 otherwise (20 evaluations), and apply the pre-aggregators;
        pass a ``Chain`` as ``aggregator`` for the same effect.

    References: González et al., ByzFL (arXiv:2505.24802), Optimal_IPM / Optimal_ALIE; Shejwalkar,
        Houmansadr, NDSS 2021 (AGR-tailored attacks, which search gamma against the known rule).
    """

    name: ClassVar[str] = "adaptive"

    def __init__(self, attack: Any = "alie", budget: int = 30, objective: str = "distance",
                 low: float | None = None, high: float | None = None, span: float = 100.0) -> None:
        self.attack = _base_attack(attack)
        if isinstance(budget, bool) or not isinstance(budget, Integral) or not 4 <= budget <= 1000:
            raise ConfigurationError(f"Adaptive(budget={budget!r}): must be an int in [4, 1000]")
        self.budget = int(budget)
        self.objective = choice_option("Adaptive", "objective", objective, OBJECTIVES)
        self.low = real_option("Adaptive", "low", low, low=0.0, strict=True, allow_none=True)
        self.high = real_option("Adaptive", "high", high, low=0.0, strict=True, allow_none=True)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ConfigurationError(f"Adaptive(low={low!r}, high={high!r}): needs low < high")
        self.span = real_option("Adaptive", "span", span, low=1.0, strict=True)

    def strength_parameter(self) -> None:
        return None

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        return self._search(honest, f, rng, aggregator).vectors

    def search(self, honest: np.ndarray, *, num_byzantine: int, rng: np.random.Generator,
               aggregator: AggregatorFn) -> SearchResult:
        """Run the search and return the chosen strength, its damage and the number of aggregator calls."""
        honest = check_honest(self.name, honest, self.min_honest)
        f = check_num_byzantine(self.name, num_byzantine)
        return self._search(honest, f, check_rng(self.name, rng), aggregator)

    def _search(self, honest: np.ndarray, f: int, rng: np.random.Generator, aggregator: Any) -> SearchResult:
        if aggregator is None or not callable(aggregator):
            raise ConfigurationError("Adaptive needs aggregator=... (a callable [n, d] -> [d], the rule in use) "
                                     "to search the attack's strength; pass the pipeline's aggregator")
        seed = int(rng.integers(2**63 - 1))
        mean = honest.mean(axis=0)
        calls = 0
        best: SearchResult | None = None

        def evaluate(strength: float, attack: UpdateAttack) -> float:
            nonlocal calls, best
            vectors = attack(honest, num_byzantine=f, rng=np.random.default_rng(seed))
            out = np.asarray(aggregator(np.concatenate([honest, vectors])), dtype=np.float64)
            calls += 1
            if out.shape != mean.shape:
                raise ConfigurationError(f"Adaptive: the aggregator returned shape {out.shape}, expected {mean.shape}")
            value = float(np.linalg.norm(out - mean)) if self.objective == "distance" else -float(out @ mean)
            value = value if math.isfinite(value) else -math.inf
            if best is None or value > best.damage:
                best = SearchResult(strength, value, calls, vectors)
            return value

        s0 = self.attack.resolved_strength(honest, f)
        evaluate(s0, self.attack)
        ref = s0 if s0 > 0 else 1.0
        low = self.low if self.low is not None else ref / self.span
        high = self.high if self.high is not None else ref * self.span
        if not low < high:
            raise ConfigurationError(f"Adaptive: empty strength range [{low:g}, {high:g}]; set low < high")

        def at(strength: float) -> float:
            return evaluate(strength, self.attack.with_strength(strength))

        grid = np.geomspace(low, high, max(2, (self.budget - 1) // 2))
        values = [at(float(s)) for s in grid]
        k = int(np.argmax(values))
        a, b = math.log(grid[max(k - 1, 0)]), math.log(grid[min(k + 1, grid.size - 1)])
        # golden-section search for a maximum on [a, b] (log strength), within the calls left
        x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
        v1 = v2 = None
        while calls < self.budget:
            if v1 is None:
                v1 = at(math.exp(x1))
                continue
            if v2 is None:
                v2 = at(math.exp(x2))
                continue
            if v1 >= v2:  # the maximum is in [a, x2]
                b, x2, v2 = x2, x1, v1
                x1, v1 = b - _GOLDEN * (b - a), None
            else:  # in [x1, b]
                a, x1, v1 = x1, x2, v2
                x2, v2 = a + _GOLDEN * (b - a), None
        assert best is not None
        return SearchResult(best.strength, best.damage, calls, best.vectors)

    def __repr__(self) -> str:
        return (f"Adaptive(attack={self.attack!r}, budget={self.budget}, objective={self.objective!r}, "
                f"low={self.low!r}, high={self.high!r}, span={self.span!r})")


def _base_attack(attack: Any) -> UpdateAttack:
    """An UpdateAttack with a strength knob from a kind, a spec or an instance (never another Adaptive)."""
    if isinstance(attack, str):
        attack = build_attack({"kind": attack}, where="Adaptive(attack=...)")
    elif isinstance(attack, Mapping):
        attack = build_attack(attack, where="Adaptive(attack=...)")
    if not isinstance(attack, UpdateAttack):
        raise ConfigurationError(f"Adaptive(attack={attack!r}): must be an attack kind, a spec or an attack")
    if isinstance(attack, Adaptive) or attack.strength_parameter() is None:
        raise ConfigurationError(f"Adaptive(attack={attack!r}): {attack.name} has no strength to search; "
                                 "use sign_flip, gaussian, alie, ipm, min_max, min_sum or large_norm")
    return attack
