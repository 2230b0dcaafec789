"""Is the noise drawn afresh each round? A floor on the noise that differencing two releases leaves.

The accountant composes the rounds as independent Gaussian mechanisms: every round's noise is drawn afresh.
A classic bug breaks that without making any one round less noisy: a generator seeded the same way each
round, noise computed once and cached, a resumed run that replays the first rounds' seeds, a client whose
noise is fixed by its id. Anyone holding two releases then subtracts them, the reused noise cancels, and
what else changed between the two rounds (a canary that was in one of them) stands out. The per-round
Gaussian estimate (``secfl.audit.privacy.gaussian_audit``) looks at one round at a time and cannot see it.

The test. Take two rounds t < t' and the canaries in neither round's sum (out-canaries, and in-canaries
sampled in neither). The difference of a canary's own-group projections, d_i = y[t', i] - y[t, i], holds
both rounds' noise along a unit direction: at least N(0, s_t^2 + s_t'^2) when the noise is fresh, with
s_t = z_t C the noise the pipeline reports for round t (its realized noise multiplier z_t, from the round's
privacy event, and the clip C). Everything else in d (the honest clients' updates and their drift, the
other canaries, other groups' noise, the model's feedback on earlier noise) only adds variance. So, with
fresh noise,

    V = sum_i d_i^2 / (s_t^2 + s_t'^2)    is at least a chi-square with n degrees of freedom

(n the canaries in neither round; their random directions make the noise's projections nearly
independent), and a small lower-tail probability P(chi2_n <= V) says the two releases share noise. Two
tests split the error budget ``alpha``:

- the worst pair: the smallest of these p-values over all pairs of rounds, times the number of pairs
  (Bonferroni). Full reuse between any two rounds: a period, a replay, a cached vector;
- pooled: V and n summed over the disjoint consecutive pairs (1, 2), (3, 4), ... Partial reuse between
  consecutive rounds: a part of the noise, or some clients' noise fixed.

It is flagged when either p-value is below alpha / 2. The report gives V / n, the share of the reported
noise variance that differencing leaves (about 1 or more when the noise is fresh).

Threat model: as ``secfl.audit.privacy.canaries``; the auditor is the defender and knows which canaries are
in. What it does not see: reuse diluted below its power (few clients with fixed noise among many); noise
that is fresh but smaller than reported (the Gaussian estimate's job); noise whose round events are not
Gaussian (``ddgauss``: ``canary_audit`` skips the test).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from secfl.exceptions import ConfigurationError

__all__ = ["finding", "floor_test"]


def floor_test(own_group: np.ndarray, delivered: np.ndarray, included: np.ndarray, scales: np.ndarray, *,
               alpha: float) -> dict[str, Any]:
    """The fresh-noise test (module doc) on ``own_group`` [rounds, m] with ``delivered`` [rounds, m],
    ``included`` [m] and ``scales`` [rounds] (s_t, in the observations' units).

    Returns the worst pair (its 1-based rounds, V / n and corrected p-value), the pooled V / n and p-value,
    the number of pairs, ``alpha`` and ``flagged``.

    Raises:
        ConfigurationError: mismatched shapes, non-finite values, scales not > 0, alpha outside (0, 1), fewer
            than 2 rounds, or no pair of rounds with a canary in neither.
    """
    y = np.asarray(own_group, dtype=np.float64)
    present, inc = np.asarray(delivered, dtype=bool), np.asarray(included, dtype=bool)
    s2 = np.asarray(scales, dtype=np.float64) ** 2
    if y.ndim != 2 or present.shape != y.shape or inc.shape != y.shape[1:] or s2.shape != (y.shape[0],):
        raise ConfigurationError(f"observations {y.shape}, delivered {present.shape}, included {inc.shape} and "
                                 f"scales {s2.shape} must be [rounds, m], [rounds, m], [m] and [rounds]")
    signal = present & inc[None, :]
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(s2)) and np.all(s2 > 0)):
        raise ConfigurationError("the observations must be finite and the noise scales finite and > 0")
    if not 0 < alpha < 1:
        raise ConfigurationError(f"alpha={alpha!r} must be in (0, 1)")
    if y.shape[0] < 2:
        raise ConfigurationError("one round: there is no pair of releases to difference")
    worst = (np.inf, 0, 0, 0.0)  # log p, t, t', V / n
    pairs = 0
    pooled_v = pooled_n = 0.0
    for t in range(y.shape[0] - 1):
        null = ~signal[t + 1:] & ~signal[t]
        n = null.sum(axis=1)
        v = np.where(null, (y[t + 1:] - y[t]) ** 2, 0.0).sum(axis=1) / (s2[t + 1:] + s2[t])
        ok = n >= 1
        pairs += int(ok.sum())
        if ok.any():
            logp = np.full(n.shape, np.inf)
            logp[ok] = stats.chi2.logcdf(v[ok], n[ok])
            k = int(np.argmin(logp))
            if logp[k] < worst[0]:
                worst = (float(logp[k]), t, t + 1 + k, float(v[k] / n[k]))
        if t % 2 == 0 and n[0] >= 1:  # the disjoint consecutive pair (t, t + 1)
            pooled_v, pooled_n = pooled_v + float(v[0]), pooled_n + float(n[0])
    if pairs == 0:
        raise ConfigurationError("no pair of rounds has a canary in neither: nothing to difference")
    worst_p = min(1.0, float(np.exp(worst[0])) * pairs)
    pooled_p = float(stats.chi2.cdf(pooled_v, pooled_n)) if pooled_n else 1.0
    return {"pairs": pairs, "worst_rounds": [worst[1] + 1, worst[2] + 1], "worst_fraction": worst[3],
            "worst_p": worst_p, "pooled_fraction": pooled_v / pooled_n if pooled_n else None, "pooled_p": pooled_p,
            "alpha": alpha, "flagged": bool(worst_p < alpha / 2 or pooled_p < alpha / 2)}


def finding(result: dict[str, Any]) -> str:
    """What differencing left, in words: the worst pair of rounds and the pooled consecutive pairs."""
    a, b = result["worst_rounds"]
    text = (f"differencing rounds {a} and {b} leaves {100 * result['worst_fraction']:.3g}% of the noise variance the "
            f"pipeline reports (p = {result['worst_p']:.2g}, corrected for {result['pairs']} pairs of rounds)")
    if result["pooled_fraction"] is not None:
        text += (f"; consecutive rounds, pooled, leave {100 * result['pooled_fraction']:.3g}% "
                 f"(p = {result['pooled_p']:.2g})")
    return text
