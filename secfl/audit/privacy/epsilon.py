"""Empirical privacy auditing with canaries: a one-run epsilon lower bound and a one-shot estimate.

Two tools, and what they mean:

* ``one_run_lower_bound``: Steinke, Nasr, Jagielski, "Privacy auditing with one (1) training run",
  NeurIPS 2023 (arXiv 2305.08846). m canaries are each included independently with probability 1/2;
  after one run the auditor scores every canary, guesses "in" for the top k+ and "out" for the bottom
  k- (abstaining on the rest): r = k+ + k- guesses, v correct (``canary_guesses``). Under the null
  hypothesis "the mechanism is (eps, delta)-DP" (their Theorem 3.1 / Proposition 5.7 and Algorithm 1),
  with q = e^eps / (1 + e^eps) the accuracy of eps-randomized response, the p-value of v is

      beta  = P[Binomial(r, q) >= v]
      alpha = max_{i = 1..v} P[v - i <= Binomial(r, q) < v] / i
      p(eps) = min(1, beta + alpha * 2 m delta)          (delta = 0: p = beta)

  and the lower bound is the largest eps with p(eps) <= 1 - confidence (bisection: p grows with eps).
  It IS a statistical bound: if the mechanism really is (eps, delta)-DP, then ``eps_LB > eps`` happens
  with probability at most 1 - confidence, provided (k+, k-) are fixed before looking at the scores.
  Choosing them post hoc from the same scores needs a multiple-testing correction (not done here).
  The bound saturates: even all-correct guesses cap eps_LB at a ceiling set by (m, r, confidence)
  (``AuditResult.epsilon_ceiling``), e.g. about 3.5 for m = 1000, r = 100 at 95%.

* ``one_shot_epsilon``: Andrew et al., "One-shot empirical privacy estimation for federated
  learning", ICLR 2024 (arXiv 2302.03098). Fit Gaussians to the canary statistic (e.g. the cosine of
  each canary with the final model delta) for inserted canaries and for the null (unseen canaries),
  and report the epsilon of the Gaussian mechanism that separates them. Here the separation is
  mu = |mean_in - mean_null| / s with s the pooled standard deviation sqrt((s_in^2 + s_null^2) / 2), and
  the epsilon is that of mu-GDP (Dong, Roth, Su 2019, Corollary 2.13):

      delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2),

  inverted by bisection. Andrew et al. use the exact epsilon of two Gaussians with unequal variances;
  this equal-variance (pooled) form coincides with it when the variances match, as they do for the
  Gaussian mechanism in high dimension. It is an ESTIMATE, not a high-confidence bound: never use it
  to flag a bug; use ``one_run_lower_bound`` and ``check_claim`` for that.

``check_claim(claimed, lower_bound)`` raises ``PrivacyAuditError`` when a valid lower bound exceeds the
accountant's claim: the noise or the accounting is wrong (noise not applied, RNG reuse, a sampling or
sensitivity mismatch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

from secfl.exceptions import ConfigurationError, PrivacyAuditError
from secfl.privacy.gdp import gdp_epsilon

__all__ = [
    "PrivacyAuditError",
    "AuditResult",
    "one_run_p_value",
    "one_run_lower_bound",
    "canary_guesses",
    "audit_canaries",
    "gdp_epsilon",
    "one_shot_epsilon",
    "GUESS_FRACTIONS",
    "best_guess_audit",
    "check_claim",
]

_EPS_MAX = 100.0  # q = expit(100) == 1.0 in float64: no finite audit goes beyond it
_TOL = 1e-7


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigurationError(f"{name}={value!r} must be an integer >= {low}")
    return int(value)


def _real(name: str, value: object, low: float, high: float, *, open_low: bool, open_high: bool) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        brackets = ("(" if open_low else "[") + f"{low:g}, {high:g}" + (")" if open_high else "]")
        raise ConfigurationError(f"{name}={value!r} must be a finite number in {brackets}")
    return float(value)


def _check_counts(num_canaries: object, num_guesses: object, num_correct: object) -> tuple[int, int, int]:
    m = _count("num_canaries", num_canaries, 1)
    r = _count("num_guesses", num_guesses, 0)
    v = _count("num_correct", num_correct, 0)
    if r > m:
        raise ConfigurationError(f"num_guesses={r} cannot exceed num_canaries={m}")
    if v > r:
        raise ConfigurationError(f"num_correct={v} cannot exceed num_guesses={r}")
    return m, r, v


def one_run_p_value(num_canaries: int, num_guesses: int, num_correct: int, *, epsilon: float, delta: float) -> float:
    """The p-value of ``num_correct`` of ``num_guesses`` under the null "(epsilon, delta)-DP" (module doc)."""
    m, r, v = _check_counts(num_canaries, num_guesses, num_correct)
    eps = _real("epsilon", epsilon, 0.0, math.inf, open_low=False, open_high=True)
    dlt = _real("delta", delta, 0.0, 1.0, open_low=False, open_high=True)
    if v == 0:
        return 1.0
    q = float(special.expit(eps))
    beta = float(stats.binom.sf(v - 1, r, q))  # P[B >= v]
    if dlt == 0.0:
        return min(beta, 1.0)
    i = np.arange(1, v + 1)
    between = stats.binom.sf(v - i - 1, r, q) - beta  # P[v - i <= B < v]
    alpha = float(np.max(between / i))
    return min(beta + alpha * 2 * m * dlt, 1.0)


def one_run_lower_bound(
    num_canaries: int, num_guesses: int, num_correct: int, *, delta: float, confidence: float = 0.95
) -> float:
    """Largest epsilon whose one-run p-value is <= 1 - confidence (0 if even epsilon = 0 is not rejected).

    Steinke, Nasr, Jagielski NeurIPS'23; bisection to 1e-7 on [0, 100].

    Raises:
        ConfigurationError: counts that are not integers with num_correct <= num_guesses <= num_canaries,
            delta outside [0, 1), or confidence outside (0, 1).
    """
    m, r, v = _check_counts(num_canaries, num_guesses, num_correct)
    dlt = _real("delta", delta, 0.0, 1.0, open_low=False, open_high=True)
    level = 1.0 - _real("confidence", confidence, 0.0, 1.0, open_low=True, open_high=True)

    def rejected(eps: float) -> bool:
        return one_run_p_value(m, r, v, epsilon=eps, delta=dlt) <= level

    if r == 0 or not rejected(0.0):
        return 0.0
    if rejected(_EPS_MAX):
        return _EPS_MAX
    low, high = 0.0, _EPS_MAX
    while high - low > _TOL:
        middle = (low + high) / 2
        low, high = (middle, high) if rejected(middle) else (low, middle)
    return low


def canary_guesses(scores: object, included: object, k_pos: int, k_neg: int) -> tuple[int, int]:
    """Guess "in" for the ``k_pos`` highest scores, "out" for the ``k_neg`` lowest, abstain on the rest.

    Ties are broken by canary index (stable sort), so fix an order with no information in it.

    Returns:
        ``(num_guesses, num_correct)`` with num_guesses = k_pos + k_neg.

    Raises:
        ConfigurationError: scores and included not 1-D of the same length, non-finite scores, or
            k_pos + k_neg more than the number of canaries.
    """
    s = np.asarray(scores, dtype=float)
    inc = np.asarray(included)
    if s.ndim != 1 or inc.shape != s.shape or s.size == 0:
        raise ConfigurationError(
            f"scores {s.shape} and included {inc.shape} must be 1-D arrays of the same positive length"
        )
    if not np.all(np.isfinite(s)):
        raise ConfigurationError("scores must be finite")
    if inc.dtype != bool and not np.all((inc == 0) | (inc == 1)):
        raise ConfigurationError("included must be booleans (or 0/1)")
    kp, kn = _count("k_pos", k_pos, 0), _count("k_neg", k_neg, 0)
    if kp + kn > s.size:
        raise ConfigurationError(f"k_pos + k_neg = {kp + kn} exceeds the {s.size} canaries")
    inc = inc.astype(bool)
    order = np.argsort(s, kind="stable")  # ascending
    correct = int(np.sum(~inc[order[:kn]])) + (int(np.sum(inc[order[s.size - kp:]])) if kp else 0)
    return kp + kn, correct


@dataclass(frozen=True)
class AuditResult:
    """One one-run audit: the counts, the lower bound, and its ceiling (all guesses correct)."""

    num_canaries: int
    num_guesses: int
    num_correct: int
    delta: float
    confidence: float
    epsilon_lower_bound: float
    epsilon_ceiling: float
    claimed_epsilon: float | None = None

    @property
    def ratio(self) -> float | None:
        """epsilon_lower_bound / claimed_epsilon (None without a claim)."""
        if self.claimed_epsilon is None:
            return None
        return self.epsilon_lower_bound / self.claimed_epsilon if self.claimed_epsilon > 0 else math.inf


def audit_canaries(
    scores: object, included: object, *, k_pos: int, k_neg: int, delta: float, confidence: float = 0.95,
    claimed_epsilon: float | None = None,
) -> AuditResult:
    """Guesses, one-run lower bound and ceiling in one call; checks the claim when one is given.

    Raises:
        ConfigurationError: bad inputs (see ``canary_guesses`` and ``one_run_lower_bound``).
        PrivacyAuditError: the lower bound exceeds ``claimed_epsilon``.
    """
    r, v = canary_guesses(scores, included, k_pos, k_neg)
    m = int(np.asarray(scores).size)
    lower = one_run_lower_bound(m, r, v, delta=delta, confidence=confidence)
    ceiling = one_run_lower_bound(m, r, r, delta=delta, confidence=confidence)
    if claimed_epsilon is not None:
        check_claim(claimed_epsilon, lower)
    return AuditResult(m, r, v, float(delta), float(confidence), lower, ceiling,
                       None if claimed_epsilon is None else float(claimed_epsilon))


def check_claim(claimed_epsilon: float, lower_bound: float) -> None:
    """Raise ``PrivacyAuditError`` if an empirical lower bound exceeds the claimed epsilon.

    Raises:
        ConfigurationError: a negative or non-finite claim, or a negative or NaN lower bound.
        PrivacyAuditError: lower_bound > claimed_epsilon.
    """
    claim = _real("claimed_epsilon", claimed_epsilon, 0.0, math.inf, open_low=False, open_high=True)
    lower = _real("lower_bound", lower_bound, 0.0, math.inf, open_low=False, open_high=False)
    if lower > claim:
        raise PrivacyAuditError(
            f"empirical epsilon lower bound {lower:.4g} exceeds the claimed epsilon {claim:.4g}: the DP noise "
            "or the privacy accounting is wrong (noise not applied, RNG reuse, sampling or sensitivity mismatch)"
        )


def one_shot_epsilon(observed_cosines_in: object, null_cosines: object, delta: float) -> float:
    """Andrew et al. ICLR'24 one-shot epsilon ESTIMATE (not a bound) from inserted vs null canary statistics.

    mu = |mean(in) - mean(null)| / sqrt((var(in) + var(null)) / 2) (sample variances, ddof=1), then the
    mu-GDP epsilon at ``delta`` (see the module doc).

    Raises:
        ConfigurationError: fewer than 2 finite values in either sample, zero pooled variance, or delta
            outside (0, 1).
    """
    samples = []
    for name, values in (("observed_cosines_in", observed_cosines_in), ("null_cosines", null_cosines)):
        x = np.asarray(values, dtype=float).ravel()
        if x.size < 2 or not np.all(np.isfinite(x)):
            raise ConfigurationError(f"{name} must hold at least 2 finite values, got {x.size}")
        samples.append(x)
    dlt = _real("delta", delta, 0.0, 1.0, open_low=True, open_high=True)
    x_in, x_null = samples
    pooled = math.sqrt((x_in.var(ddof=1) + x_null.var(ddof=1)) / 2)
    if pooled == 0.0:
        raise ConfigurationError("the canary statistics have zero variance: no Gaussian fits them")
    mu = abs(float(x_in.mean() - x_null.mean())) / pooled
    return gdp_epsilon(mu, dlt)


#: The guess counts of the one-run audit, as fractions of the canaries m (top k, and top k + bottom k each).
GUESS_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.25)


def best_guess_audit(scores: np.ndarray, included: np.ndarray, *, delta: float, confidence: float,
                     claimed_epsilon: float | None) -> dict[str, Any]:
    """The one-run bound for each guess count in ``GUESS_FRACTIONS`` (top k, and top k + bottom k), the best
    of them at the Bonferroni-corrected confidence; ``failed`` when it exceeds ``claimed_epsilon``."""
    m = len(scores)
    tests = sorted({(k, k_neg) for f in GUESS_FRACTIONS for k in [max(1, round(f * m))] for k_neg in (0, k)
                    if k + k_neg <= m})
    corrected = 1 - (1 - confidence) / len(tests)
    best: dict[str, Any] | None = None
    for k_pos, k_neg in tests:
        r = audit_canaries(scores, included, k_pos=k_pos, k_neg=k_neg, delta=delta, confidence=corrected)
        if best is None or r.epsilon_lower_bound > best["epsilon_lower_bound"]:
            best = {"k_pos": k_pos, "k_neg": k_neg, "guesses": r.num_guesses, "correct": r.num_correct,
                    "epsilon_lower_bound": r.epsilon_lower_bound, "epsilon_ceiling": r.epsilon_ceiling}
    ceiling = max(one_run_lower_bound(m, k + kn, k + kn, delta=delta, confidence=corrected)
                  for k, kn in tests)
    best.update(canaries=m, included=int(np.sum(included)), confidence=confidence, tests=len(tests),
                corrected_confidence=corrected, audit_ceiling=ceiling)
    best["failed"] = claimed_epsilon is not None and best["epsilon_lower_bound"] > claimed_epsilon
    return best
