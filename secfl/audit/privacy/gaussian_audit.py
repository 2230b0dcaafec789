"""The Gaussian (f-DP) side of the canary audit: measure each round's signal-to-noise, flag an under-reported
epsilon, and say how much under-reporting the audit can see (its power).

Model. In a round where a canary that is in reached the sum, the release's projection on its direction is
x ~ N(c', s^2) (c' the canary's norm after the pipeline, s the noise on the sum); every other observation
(a canary that is out, or in but not sampled that round) is x ~ N(0, s^2). The other clients' updates only
add to s. So one round is the Gaussian mechanism with mu = c' / s (mu-GDP, Dong, Roth, Su 2019), and the run
is that mechanism sampled at the scenario's rate and composed over its rounds, which is exactly what the
accountant assumed with noise multiplier z = 1 / mu. The estimate (``estimate``):

    mu_hat = (mean of the n1 in-and-delivered observations - mean of the n0 others) / std of the others
    se(mu)^2 = 1/n1 + 1/n0 + mu^2 / (2 n0), or the delete-one-canary jackknife's if larger (one canary's
               observations are correlated across rounds through its direction)

Each observation is the projection on the canary's own group sum (the sum the accountant prices) minus
what the other in-canaries of that group add along its direction (known to the defender).

and the epsilon estimate is the accountant's epsilon at z = 1 / mu_hat. Which rounds a canary took part in
is the defender's knowledge (``CanaryRounds.delivered``): it measures the per-round mechanism; the
accountant then adds what sampling hides, as it does for the claim.

Flag (``assess``). The claim is flagged when mu_hat - k se > mu_claim, with k the one-sided normal quantile
of ``confidence`` and mu_claim = 1 / z_claim, z_claim the smallest multiplier for which the accountant gives
the claimed epsilon: at that confidence the noise is smaller than a correct mechanism's. A correct
mechanism is flagged with probability about 1 - confidence (less: the other clients only make s larger).
This is a test under the Gaussian model, not the assumption-free one-run bound: it does not see noise
reused across rounds (``secfl.audit.privacy.fresh_noise`` tests that) or a sampling rate other than the
claimed one. ``canary_audit`` runs it at half the flag's error budget, the fresh-noise test at the other half.

Power. The smallest mu the audit flags with probability ``power``: mu_claim + (k + k_power) se, with the
measured se (scaled with mu as the formula scales), told as a noise multiplier and an epsilon: it catches a
mechanism of that epsilon if the mechanism's per-round noise is Gaussian and independent across rounds,
which is the kind of bug it can see (too little noise, a sensitivity larger than the clip).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from secfl.exceptions import ConfigurationError

__all__ = ["GaussianEstimate", "estimate", "stderr", "assess"]


@dataclass(frozen=True)
class GaussianEstimate:
    """mu_hat with its standard error and the two observation counts (module doc)."""

    mu: float
    stderr: float
    signal_count: int
    null_count: int


def stderr(mu: float, signal_count: int, null_count: int) -> float:
    """se(mu) for n1 = ``signal_count`` and n0 = ``null_count`` observations (module doc)."""
    return math.sqrt(1 / signal_count + 1 / null_count + mu * mu / (2 * null_count))


def estimate(observations: np.ndarray, delivered: np.ndarray, included: np.ndarray, *,
             crosstalk: np.ndarray | None = None) -> GaussianEstimate:
    """mu_hat from ``observations`` [rounds, m], ``delivered`` [rounds, m] and ``included`` [m], with
    ``crosstalk`` [rounds, m] (what other canaries add to each observation) subtracted first.

    The standard error is the larger of the formula's (independent observations) and a delete-one-canary
    jackknife: one canary's observations share its direction, so whatever persists across rounds along it
    (the honest clients' drift, other canaries) correlates them, and the formula alone would be too small.

    Raises:
        ConfigurationError: mismatched shapes, non-finite observations, fewer than 2 observations on either
            side, or no spread.
    """
    x = np.asarray(observations, dtype=np.float64)
    present = np.asarray(delivered, dtype=bool)
    inc = np.asarray(included, dtype=bool)
    if x.ndim != 2 or present.shape != x.shape or inc.shape != (x.shape[1],):
        raise ConfigurationError(f"observations {x.shape}, delivered {present.shape} and included {inc.shape} "
                                 "must be [rounds, m], [rounds, m] and [m]")
    if crosstalk is not None:
        x = x - np.asarray(crosstalk, dtype=np.float64).reshape(x.shape)
    if not np.all(np.isfinite(x)):
        raise ConfigurationError("the observations are not all finite (a diverged run?): nothing to estimate")
    signal = present & inc[None, :]
    ones, others = x[signal], x[~signal]
    if ones.size < 2 or others.size < 2:
        raise ConfigurationError(f"{ones.size} observations of a canary in the sum and {others.size} without: "
                                 "need at least 2 of each (more rounds or more canaries)")
    spread = float(np.std(others, ddof=1))
    if not spread > 0:
        raise ConfigurationError("the observations without a canary have no spread: nothing to measure against")
    mu = float((ones.mean() - others.mean()) / spread)
    formula = stderr(mu, ones.size, others.size)
    return GaussianEstimate(mu, max(formula, _jackknife(x, signal)), int(ones.size), int(others.size))


def _jackknife(x: np.ndarray, signal: np.ndarray) -> float:
    """The delete-one-canary jackknife standard error of mu_hat (0 when it cannot be formed)."""
    n1, s1 = signal.sum(axis=0), np.where(signal, x, 0.0).sum(axis=0)
    n0, s0 = (~signal).sum(axis=0), np.where(signal, 0.0, x).sum(axis=0)
    q0 = np.where(signal, 0.0, x * x).sum(axis=0)
    c1, c0 = n1.sum() - n1, n0.sum() - n0  # the counts without canary i
    ok = (c1 >= 2) & (c0 >= 2)
    if ok.sum() < 3:
        return 0.0
    mean1 = (s1.sum() - s1[ok]) / c1[ok]
    mean0 = (s0.sum() - s0[ok]) / c0[ok]
    var0 = ((q0.sum() - q0[ok]) - c0[ok] * mean0**2) / (c0[ok] - 1)
    loo = (mean1 - mean0) / np.sqrt(np.maximum(var0, 1e-300))
    k = loo.size
    return float(np.sqrt((k - 1) / k * np.sum((loo - loo.mean()) ** 2)))


def assess(est: GaussianEstimate, *, claimed: float, rounds: int, epsilon_of: Callable[[float, int], float],
           noise_of: Callable[[float, int], float], confidence: float, power: float = 0.95) -> dict[str, Any]:
    """Epsilon estimate, its confidence limits, the flag and the power (module doc).

    ``epsilon_of(z, t)``: the accountant's epsilon after t rounds with multiplier z; ``noise_of(eps, t)``: the
    smallest multiplier reaching eps after t rounds.

    Raises:
        ConfigurationError: confidence or power outside (0, 1), a claim that is not finite and > 0.
    """
    for name, value in (("confidence", confidence), ("power", power)):
        if not 0 < value < 1:
            raise ConfigurationError(f"{name}={value!r} must be in (0, 1)")
    if not (math.isfinite(claimed) and claimed > 0):
        raise ConfigurationError(f"claimed epsilon {claimed!r} must be finite and > 0")
    k, k_power = float(stats.norm.ppf(confidence)), float(stats.norm.ppf(power))

    def eps(mu: float) -> float:
        return epsilon_of(1 / mu, rounds) if mu > 0 else 0.0

    z_claim = noise_of(claimed, rounds)
    mu_claim = 1 / z_claim
    low, high = est.mu - k * est.stderr, est.mu + k * est.stderr
    inflation = est.stderr / stderr(est.mu, est.signal_count, est.null_count)  # the jackknife's excess, >= 1
    detectable = mu_claim
    for _ in range(20):  # fixed point of mu = mu_claim + (k + k_power) se(mu); se grows slowly with mu
        detectable = mu_claim + (k + k_power) * inflation * stderr(detectable, est.signal_count, est.null_count)
    return {
        "mu": est.mu, "mu_stderr": est.stderr, "signal_observations": est.signal_count,
        "null_observations": est.null_count, "confidence": confidence,
        "noise_multiplier": 1 / est.mu if est.mu > 0 else math.inf, "noise_multiplier_claimed": z_claim,
        "epsilon": eps(est.mu), "epsilon_low": eps(low), "epsilon_high": eps(high),
        "flagged": low > mu_claim,
        "power": power, "detectable_noise_multiplier": 1 / detectable, "detectable_epsilon": eps(detectable),
    }
