"""The exact (epsilon, delta) of the Gaussian mechanism and of its compositions, through Gaussian DP.

A Gaussian mechanism with L2 sensitivity 1 and noise std z is mu-GDP with mu = 1/z, and k Gaussian
mechanisms compose exactly into a Gaussian one with mu = sqrt(sum 1/z_i^2) (Dong, Roth, Su, "Gaussian
Differential Privacy", JRSS-B 2022, Corollary 3.3). Its privacy profile is exact (Balle and Wang, ICML 2018;
Dong, Roth, Su, Corollary 2.13):

    delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)

``gdp_epsilon`` inverts it by bisection. For unsampled Gaussian rounds this is the exact epsilon, where a
numerical PLD on a grid gives a slightly larger upper bound, thousands of times more slowly.
"""

from __future__ import annotations

import math

from scipy import stats

from secfl.exceptions import ConfigurationError

__all__ = ["gdp_delta", "gdp_epsilon"]


def gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-GDP (mu > 0), the second term in log space."""
    return float(stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps + stats.norm.logcdf(-eps / mu - mu / 2)))


def gdp_epsilon(mu: float, delta: float) -> float:
    """Epsilon of mu-GDP at ``delta``, by bisection to 1e-9 relative (0 when delta(0) <= delta already).

    Raises:
        ConfigurationError: mu negative or not finite, delta outside (0, 1).
    """
    ok_mu = isinstance(mu, (int, float)) and not isinstance(mu, bool) and math.isfinite(mu) and mu >= 0
    ok_delta = isinstance(delta, (int, float)) and not isinstance(delta, bool) and 0 < delta < 1
    if not ok_mu:
        raise ConfigurationError(f"mu={mu!r} must be a finite number in [0, inf)")
    if not ok_delta:
        raise ConfigurationError(f"delta={delta!r} must be a finite number in (0, 1)")
    mu, delta = float(mu), float(delta)
    if mu == 0.0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    low, high = 0.0, 1.0
    while gdp_delta(high, mu) > delta:
        low, high = high, 2 * high
    while high - low > 1e-9 * max(1.0, high):
        middle = (low + high) / 2
        low, high = (middle, high) if gdp_delta(middle, mu) > delta else (low, middle)
    return high
