"""The Gaussian (f-DP) side of the canary audit: measure each round's signal-to-noise, flag an under-reported
epsilon, and say how much under-reporting the audit can see (its power).

Model. In a round where a canary that is in reached the sum, the release's projection on its direction is
x ~ N(c', s^2) (c' the canary's norm after the pipeline, s the noise on the sum); every other observation
(a canary that is out, or in but not sampled that round) is x ~ N(0, s^2). The other clients' updates only
add to s. So one round is the Gaussian mechanism with mu = c' / s (mu-GDP, Dong, Roth, Su 2019), and the run
is that mechanism sampled at the scenario's rate and composed over its rounds, which is exactly what the
accountant assumed with noise multiplier z = 1 / mu. The estimate (``estimate``):

    mu_hat = (mean of the n1 in-and-delivered observations - mean of the n0 others) / std of the others
    se(mu)^2 = 1/n1 + 1/n0 + mu^2 / (2 n0)

and the epsilon estimate is the accountant's epsilon at z = 1 / mu_hat. Which rounds a canary took part in
is the defender's knowledge (``CanaryRounds.delivered``): it measures the per-round mechanism; the
accountant then adds what sampling hides, as it does for the claim.

Flag (``assess``). The claim is flagged when mu_hat - k se > mu_claim, with k the one-sided normal quantile
of ``confidence`` and mu_claim = 1 / z_claim, z_claim the smallest multiplier for which the accountant gives
the claimed epsilon: at that confidence the noise is smaller than a correct mechanism's. A correct
mechanism is flagged with probability about 1 - confidence (less: the other clients only make s larger).
This is a test under the Gaussian model, not the assumption-free one-run bound: it does not see noise
reused across rounds or a sampling rate other than the claimed one.

Power. The smallest mu the audit flags with probability ``power``: mu_claim + (k + k_power) se(mu), told as
a noise multiplier and an epsilon ("it catches any mechanism whose epsilon is at least ...").
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


def estimate(observations: np.ndarray, delivered: np.ndarray, included: np.ndarray) -> GaussianEstimate:
    """mu_hat from ``observations`` [rounds, m], ``delivered`` [rounds, m] and ``included`` [m].

    Raises:
        ConfigurationError: mismatched shapes, fewer than 2 observations on either side, or no spread.
    """
    x = np.asarray(observations, dtype=np.float64)
    present = np.asarray(delivered, dtype=bool)
    inc = np.asarray(included, dtype=bool)
    if x.ndim != 2 or present.shape != x.shape or inc.shape != (x.shape[1],):
        raise ConfigurationError(f"observations {x.shape}, delivered {present.shape} and included {inc.shape} "
                                 "must be [rounds, m], [rounds, m] and [m]")
    signal = present & inc[None, :]
    ones, others = x[signal], x[~signal]
    if ones.size < 2 or others.size < 2:
        raise ConfigurationError(f"{ones.size} observations of a canary in the sum and {others.size} without: "
                                 "need at least 2 of each (more rounds or more canaries)")
    spread = float(np.std(others, ddof=1))
    if not spread > 0:
        raise ConfigurationError("the observations without a canary have no spread: nothing to measure against")
    mu = float((ones.mean() - others.mean()) / spread)
    return GaussianEstimate(mu, stderr(mu, ones.size, others.size), int(ones.size), int(others.size))


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
    detectable = mu_claim
    for _ in range(20):  # fixed point of mu = mu_claim + (k + k_power) se(mu); se grows slowly with mu
        detectable = mu_claim + (k + k_power) * stderr(detectable, est.signal_count, est.null_count)
    return {
        "mu": est.mu, "mu_stderr": est.stderr, "signal_observations": est.signal_count,
        "null_observations": est.null_count, "confidence": confidence,
        "noise_multiplier": 1 / est.mu if est.mu > 0 else math.inf, "noise_multiplier_claimed": z_claim,
        "epsilon": eps(est.mu), "epsilon_low": eps(low), "epsilon_high": eps(high),
        "flagged": low > mu_claim,
        "power": power, "detectable_noise_multiplier": 1 / detectable, "detectable_epsilon": eps(detectable),
    }
