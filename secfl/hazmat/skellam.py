"""Skellam noise from the OS CSPRNG: Poisson(mu/2) - Poisson(mu/2), the shares of distributed Skellam DP.

Threat model and randomness as in ``secfl.hazmat.discrete``: every bit from the OS CSPRNG, integer
outputs. Where floating point enters:

* ``skellam``: the Poisson draws are float64 throughout. For lambda < 10, inversion through a CDF
  table whose entries are within 2e-16 of the exact values (under 1e-14 in total variation). For
  lambda >= 10, PTRS maps a 53-bit uniform to an integer through a float transformation; each
  boundary between integers is within about a grid step, so the law is within about
  sqrt(mu) * 2^-52 in total variation (3e-13 at mu = 2e6, 4e-9 at the cap mu = 2^48), and atoms
  near the mode are off by a relative sqrt(mu) * 2^-51 at most. The log-pmf of the acceptance test
  avoids cancellation (Loader's saddle-point form) and is within about 1e-13 of the exact value
  wherever the pmf exceeds 1e-300.
"""

from __future__ import annotations

import math

import numpy as np

from secfl.hazmat import csprng
from secfl.hazmat.discrete import BATCH, check_scale, check_size, fill_by_rejection

__all__ = ["MAX_SKELLAM_MU", "skellam"]

MAX_SKELLAM_MU = 2.0**48  # PTRS on 53-bit uniforms: total variation ~ sqrt(mu) * 2^-52 <= 4e-9
_PTRS_MIN_LAMBDA = 10.0  # Hörmann's PTRS is valid for lambda >= 10; below, inversion
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_STIRLING_ERROR_SMALL = np.array(  # log(n!) - [(n + 1/2) log n - n + log sqrt(2 pi)], n = 0..15 (0 unused)
    [0.0] + [math.lgamma(n + 1) - (n + 0.5) * math.log(n) + n - _LOG_SQRT_2PI for n in range(1, 16)])



def _poisson_cdf_table(lam: float) -> np.ndarray:
    """P(X <= k) for k = 0..K, with K past lam and P(X = K) < 2^-70 (for lam < 10)."""
    pmf = [math.exp(-lam)]
    k = 0
    while k <= lam or pmf[-1] >= 2.0**-70:
        k += 1
        pmf.append(pmf[-1] * lam / k)
    return np.array([math.fsum(pmf[: j + 1]) for j in range(len(pmf))])


def _poisson_inversion(lam: float, size: int) -> np.ndarray:
    """``size`` Poisson(lam) draws by inversion: the smallest k with u < P(X <= k)."""
    cdf = _poisson_cdf_table(lam)
    out = np.empty(size, dtype=np.int64)
    for start in range(0, size, BATCH):
        u = csprng.uniform(min(BATCH, size - start))
        k = np.searchsorted(cdf, u, side="right")
        out[start:start + u.size] = np.minimum(k, cdf.size - 1)  # u past the table's rounding: < 1e-15
    return out


def _stirling_error(k: np.ndarray) -> np.ndarray:
    """log(k!) - [(k + 1/2) log k - k + log sqrt(2 pi)] for integers k >= 1, to about 1e-15."""
    kf = k.astype(np.float64)
    inv2 = 1.0 / (kf * kf)
    series = (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - inv2 / 1188) * inv2) * inv2) * inv2) / kf
    return np.where(k <= 15, _STIRLING_ERROR_SMALL[np.minimum(k, 15)], series)


def _deviance(k: np.ndarray, lam: float) -> np.ndarray:
    """k log(k/lam) + lam - k for k >= 1, without cancellation when k is close to lam.

    Near lam it uses the series (k - lam) v + 2k sum_{j>=1} v^(2j+1)/(2j+1), v = (k - lam)/(k + lam).
    """
    kf = k.astype(np.float64)
    diff = kf - lam
    v = diff / (kf + lam)
    near = np.abs(v) < 0.1
    series = diff * v
    term = 2.0 * kf * v
    for j in range(1, 12):  # |v| < 0.1: the terms fall by 100x each, 1e-22 after 11
        term = term * v * v
        series = series + term / (2 * j + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = kf * np.log(kf / lam) + lam - kf
    return np.where(near, series, direct)


def _poisson_log_pmf(k: np.ndarray, lam: float) -> np.ndarray:
    """log P(X = k) for X ~ Poisson(lam), to about 1e-13 absolute (pmf > 1e-300) even for lam ~ 2^47.

    Uses log p = -log sqrt(2 pi k) - stirling_error(k) - deviance(k, lam) (Loader's saddle point
    form) instead of -lam + k log lam - log k!, which loses ~lam log(lam) * 2^-53 to cancellation.
    """
    safe = np.maximum(k, 1)
    positive = -_LOG_SQRT_2PI - 0.5 * np.log(safe.astype(np.float64)) - _stirling_error(safe) - _deviance(safe, lam)
    return np.where(k == 0, -lam, positive)


def _ptrs_candidates(lam: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` PTRS candidates for Poisson(lam), lam >= 10, and whether each is accepted (Hörmann 1993).

    Step 1: U uniform on (-1/2, 1/2), V on [0, 1), us = 1/2 - |U|,
    k = floor((2a/us + b) U + lam + 0.43); accept at once if us >= 0.07 and V <= v_r.
    Step 2: reject if k < 0 or (us < 0.013 and V > us).
    Step 3: accept if log(V alpha / (a/us^2 + b)) <= log P(X = k).
    """
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    base = math.floor(lam)  # k = base + floor(... + frac): keeps the fractional part of lam exact
    u = csprng.uniform(2 * n)
    centred, v = u[:n] - 0.5, u[n:]  # exact: both on the 2^-53 grid
    us = 0.5 - np.abs(centred)
    valid = us > 0  # u = 0 (probability 2^-53) would divide by zero: the paper's U is open
    us = np.where(valid, us, 0.5)
    offset = np.floor((2.0 * a / us + b) * centred + (lam - base) + 0.43)
    # Beyond lam + 60 sqrt(lam) + 200 the pmf is < 1e-300: rejecting there also keeps k in int64.
    valid &= (offset >= -base) & (offset <= 60.0 * math.sqrt(lam) + 200.0)
    k = base + np.where(valid, offset, 0.0).astype(np.int64)
    quick = valid & (us >= 0.07) & (v <= v_r)
    slow = valid & ~quick & ~((us < 0.013) & (v > us))
    accepted = quick.copy()
    idx = np.flatnonzero(slow)
    if idx.size:
        with np.errstate(divide="ignore"):
            lhs = np.log(v[idx]) + math.log(alpha) - np.log(a / (us[idx] * us[idx]) + b)
        accepted[idx] = lhs <= _poisson_log_pmf(k[idx], lam)
    return k, accepted


def _poisson(lam: float, size: int) -> np.ndarray:
    """``size`` Poisson(lam) draws from CSPRNG uniforms: inversion below lam = 10, PTRS above."""
    if lam == 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    if lam < _PTRS_MIN_LAMBDA:
        return _poisson_inversion(lam, size)
    return fill_by_rejection(size, lambda n: _ptrs_candidates(lam, n), rate=0.75)


def skellam(mu: float, size: int) -> np.ndarray:
    """Samples from the symmetric Skellam law with variance mu: Poisson(mu/2) - Poisson(mu/2).

    Each Poisson(lambda) is drawn from CSPRNG uniforms, vectorised: inversion (a search in the CDF
    table) for lambda < 10, Hörmann's PTRS transformed rejection for lambda >= 10, with rejected
    positions redrawn until all are filled. See the module docstring for the float64 error.

    Args:
        mu: the variance, 0 <= mu <= 2^48.
        size: number of samples.

    Returns:
        int64 array of shape (size,) (all 0 when mu = 0).

    Raises:
        ConfigurationError: ``mu`` is negative, NaN, infinite, above 2^48 or not a number, or
            ``size`` is not an int >= 0.

    References: Hörmann, The transformed rejection method for generating Poisson random variables,
        Insurance: Mathematics and Economics 12, 1993; Agarwal, Kairouz, Liu, The Skellam Mechanism
        for Differentially Private Federated Learning, NeurIPS 2021; Loader, Fast and Accurate
        Computation of Binomial Probabilities, 2000 (log-pmf).
    """
    variance = check_scale(mu, "mu", MAX_SKELLAM_MU)
    count = check_size(size)
    draws = _poisson(variance / 2.0, 2 * count)
    return draws[:count] - draws[count:]
