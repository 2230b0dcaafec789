"""Integer-valued DP noise from the OS CSPRNG: the discrete Gaussian (exact and vectorised).

Skellam noise (``secfl.hazmat.skellam``) reuses this module's input checks and batched rejection.

Threat model: the noise hides one client's update from the server and from the other clients, so
it must be unpredictable to anyone but that client. Every random bit therefore comes from the OS
CSPRNG through ``secfl.hazmat.csprng`` (ChaCha20 keystream under a fresh key from ``os.urandom`` on
every request, its counter from block 0: limits in ``secfl.hazmat.keystream``); never
``numpy.random``, ``random`` or the experiment seed. The outputs are integers, not floats, so the
attack of Mironov (CCS 2012), which reads the true value off the pattern of low-order bits of a
floating-point Laplace/Gaussian sample, has nothing to read.

Where floating point enters, and how far the output law can be from the ideal one:

* ``discrete_gaussian_exact``: nowhere. Integer/``Fraction`` arithmetic on uniform integers
  (rejection sampling of CSPRNG bits); the output has exactly the discrete Gaussian law.
* ``discrete_gaussian``: only in the acceptance tests, each comparing a 53-bit CSPRNG uniform with
  a float64 threshold: (1) the geometric part V of the discrete Laplace proposal, by inverse CDF
  ``floor(-log1p(-u))`` (i.e. comparisons with 1 - e^-k); (2) accepting its low part U with
  probability exp(-U/t); (3) the Gaussian test exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)). The sign and
  U itself (uniform on [0, t)) are exact integer draws. Each threshold is within a few ulps and the
  uniform grid is 2^-53, so tests (2) and (3) are each off by at most about 4 * 2^-53 in
  probability; the 36 boundaries of (1) are each within one grid step of the exact ones (a unit
  test checks all of them) and V > 36 (probability e^-37) is cut, so (1) is within 37 * 2^-53 in
  total variation. That is under 5e-15 per proposal, hence under about 5e-14 per output (the
  acceptance rate is >= 0.31), for every sigma <= 2^40: the resolution does not degrade with sigma
  because U is drawn exactly (an inverse-CDF geometric of parameter e^(-1/t) on 53-bit uniforms
  would lose resolution like t * 2^-53, and is not used).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from fractions import Fraction

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat import csprng
from secfl.hazmat.randomness import check_count, uniform_mod

__all__ = ["MAX_SIGMA", "discrete_gaussian_exact", "discrete_gaussian", "check_scale", "check_size",
           "fill_by_rejection", "BATCH"]

MAX_SIGMA = 2.0**40  # |y| <= 37 t < 2^46 stays exact in float64 and int64
BATCH = 1 << 15  # candidates per vectorised batch

_CandidateFn = Callable[[int], tuple[np.ndarray, np.ndarray]]


# ---------------------------------------------------------------- input checks


def check_size(size: object) -> int:
    """``size`` as a non-negative int, or ConfigurationError."""
    return check_count(size, "size")


def check_scale(value: object, name: str, limit: float) -> float:
    """``value`` as a float in [0, limit], or ConfigurationError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationError(f"{name} must be a real number, got {type(value).__name__}; pass a float >= 0")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{name} must be finite and >= 0, got {value!r}; pass a float >= 0")
    if number > limit:
        raise ConfigurationError(f"{name}={value!r} is above the supported maximum {limit:g}; rescale the data instead")
    return number


def _check_variance(sigma2: object) -> Fraction:
    """``sigma2`` as a Fraction in [0, 2^80], or ConfigurationError."""
    if isinstance(sigma2, bool) or not isinstance(sigma2, numbers.Rational):
        raise ConfigurationError(
            f"sigma2 must be an int or fractions.Fraction, got {type(sigma2).__name__}; "
            "pass an exact value such as Fraction('0.5') (floats are refused: the sampler is exact)")
    value = Fraction(int(sigma2)) if isinstance(sigma2, numbers.Integral) else Fraction(sigma2)
    if value < 0:
        raise ConfigurationError(f"sigma2 must be >= 0, got {value}; pass a variance >= 0")
    if value > Fraction(MAX_SIGMA) ** 2:
        raise ConfigurationError(f"sigma2={value} is above the supported maximum 2^80; rescale the data instead")
    return value


# ---------------------------------------------------------------- exact sampler (CKS 2020, Algorithms 1-3)


class _RandomBits:
    """Uniform random integers from ``csprng.random_bytes``, fetched in chunks; one per sampling call.

    A pool lives only inside one ``discrete_gaussian_exact`` call, so no random state outlives the
    call or is shared across a fork.
    """

    _CHUNK_BYTES = 256

    def __init__(self) -> None:
        self._pool = 0
        self._count = 0

    def bits(self, k: int) -> int:
        """A uniform integer in [0, 2^k)."""
        while self._count < k:
            self._pool |= int.from_bytes(csprng.random_bytes(self._CHUNK_BYTES), "little") << self._count
            self._count += 8 * self._CHUNK_BYTES
        value = self._pool & ((1 << k) - 1)
        self._pool >>= k
        self._count -= k
        return value

    def below(self, n: int) -> int:
        """A uniform integer in [0, n), n >= 1, by rejection of (n-1).bit_length()-bit draws."""
        k = (n - 1).bit_length()
        while True:
            value = self.bits(k)
            if value < n:
                return value

    def bernoulli(self, num: int, den: int) -> bool:
        """True with probability num/den exactly (0 <= num <= den, den >= 1)."""
        return self.below(den) < num


def _bernoulli_exp_unit(bits: _RandomBits, num: int, den: int) -> bool:
    """True with probability exp(-gamma), gamma = num/den in [0, 1] (CKS Algorithm 1, first part).

    Draws A_k ~ Bernoulli(gamma / k) for k = 1, 2, ... until the first failure at K; K is odd with
    probability sum over odd K of gamma^(K-1)/(K-1)! - gamma^K/K! = exp(-gamma).
    """
    k = 1
    while bits.bernoulli(num, den * k):
        k += 1
    return k % 2 == 1


def _bernoulli_exp(bits: _RandomBits, num: int, den: int) -> bool:
    """True with probability exp(-gamma), gamma = num/den >= 0 any rational (CKS Algorithm 1).

    exp(-gamma) = exp(-1)^floor(gamma) * exp(-(gamma - floor(gamma))): one Bernoulli(exp(-1)) per
    whole unit, stopping at the first failure, then one for the fractional part.
    """
    while num > den:
        if not _bernoulli_exp_unit(bits, 1, 1):
            return False
        num -= den
    return _bernoulli_exp_unit(bits, num, den)


def _discrete_laplace_exact(bits: _RandomBits, t: int) -> int:
    """One draw with P(x) proportional to exp(-|x|/t) on the integers (CKS Algorithm 2, s = 1)."""
    while True:
        low = bits.below(t)
        if not _bernoulli_exp(bits, low, t):
            continue
        high = 0
        while _bernoulli_exp(bits, 1, 1):
            high += 1
        magnitude = low + t * high  # geometric: P(magnitude = x) proportional to exp(-x/t)
        negative = bits.bits(1) == 1
        if negative and magnitude == 0:
            continue  # otherwise 0 would be drawn twice as often as it should
        return -magnitude if negative else magnitude


def _discrete_gaussian_exact_one(bits: _RandomBits, sigma2: Fraction, t: int) -> int:
    """One exact discrete Gaussian draw by rejection from the discrete Laplace (CKS Algorithm 3).

    Accepts y with probability exp(-gamma), gamma = (|y| - sigma2/t)^2 / (2 sigma2); with
    sigma2 = p/q that is the exact rational (|y| q t - p)^2 / (2 p q t^2).
    """
    p, q = sigma2.numerator, sigma2.denominator
    while True:
        y = _discrete_laplace_exact(bits, t)
        if _bernoulli_exp(bits, (abs(y) * q * t - p) ** 2, 2 * p * q * t * t):
            return y


def discrete_gaussian_exact(sigma2: Fraction | int, size: int) -> list[int]:
    """Exact samples from the discrete Gaussian N_Z(0, sigma2): P(x) proportional to exp(-x^2 / (2 sigma2)).

    Only integer and Fraction arithmetic on uniform integers drawn from CSPRNG bits: no floating
    point anywhere, so the law is exact. Slow (several microseconds per draw, in pure Python); it is
    the reference for ``discrete_gaussian``.

    Args:
        sigma2: the scale parameter sigma^2 as an int or ``fractions.Fraction``, 0 <= sigma2 <= 2^80.
            (The variance of the output is slightly below sigma2 for sigma < 1.)
        size: number of samples.

    Returns:
        ``size`` Python ints (all 0 when sigma2 = 0).

    Raises:
        ConfigurationError: ``sigma2`` is not an exact rational in range, or ``size`` is not an int >= 0.

    References: Canonne, Kamath, Steinke, The Discrete Gaussian for Differential Privacy, NeurIPS
        2020, Algorithms 1-3.
    """
    variance = _check_variance(sigma2)
    count = check_size(size)
    if variance == 0:
        return [0] * count
    t = math.isqrt(variance.numerator // variance.denominator) + 1  # floor(sigma) + 1
    bits = _RandomBits()
    return [_discrete_gaussian_exact_one(bits, variance, t) for _ in range(count)]


# ---------------------------------------------------------------- vectorised samplers


class _CsprngBytes:
    """``secfl.hazmat.csprng.random_bytes`` as a ``Randomness`` source for ``uniform_mod``."""

    def bytes(self, n: int) -> bytes:
        return csprng.random_bytes(n)


_CSPRNG = _CsprngBytes()


def fill_by_rejection(size: int, candidates: _CandidateFn, rate: float) -> np.ndarray:
    """Fill ``size`` int64 outputs from batches of (values, accepted) candidates.

    The accepted values of a batch are i.i.d. from the target law whatever their positions, so taking
    the first ``need`` of them is unbiased. ``rate`` is the first guess of the acceptance rate; it
    sizes the batches (later batches use the observed rate). Batches hold at most ``BATCH``
    candidates: small arrays stay in cache and reuse heap memory (one batch of 460k candidates is
    ~5x slower than the same work in batches of 32k).
    """
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        need = size - filled
        draw = min(math.ceil(need / rate * 1.05) + 32, BATCH)
        values, accepted = candidates(draw)
        good = values[accepted][:need]
        out[filled:filled + good.size] = good
        filled += good.size
        rate = max(float(accepted.mean()), 0.05)
    return out


def _geometric_e1(u: np.ndarray) -> np.ndarray:
    """Inverse CDF of P(v) = (1 - e^-1) e^-v on v = 0, 1, ...: floor(-log(1 - u)), u uniform on [0, 1).

    With 53-bit uniforms the largest value is 36 (the cut tail has probability e^-37 < 1e-16).
    """
    return np.floor(-np.log1p(-u)).astype(np.int64)


def _laplace_magnitude_candidates(t: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` candidate magnitudes x = U + t V with P(x) proportional to exp(-x/t) once accepted.

    U is uniform on [0, t) (exact integers) and accepted with probability exp(-U/t); V is geometric
    with P(V >= k) = e^-k. This is CKS Algorithm 2, which keeps the float decisions independent of t.
    """
    low = uniform_mod(_CSPRNG, t, n).astype(np.int64)
    u = csprng.uniform(2 * n)
    accepted = u[:n] < np.exp(-low / t)
    return low + t * _geometric_e1(u[n:]), accepted


def _discrete_gaussian_candidates(sigma: float, t: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` discrete Laplace proposals (scale t) and whether each passes the Gaussian acceptance test."""
    magnitude, accepted = _laplace_magnitude_candidates(t, n)
    u = csprng.uniform(2 * n)
    negative = u[:n] < 0.5
    accepted &= ~(negative & (magnitude == 0))  # reject (-, 0): zero must come from one sign only
    with np.errstate(over="ignore"):  # tiny sigma: z = inf, exp(-inf) = 0, as it should
        z = magnitude / sigma - sigma / t  # (|y| - sigma^2/t) / sigma, no NaN even if sigma^2 underflows
        accepted &= u[n:] < np.exp(-0.5 * z * z)
    return np.where(negative, -magnitude, magnitude), accepted


def discrete_gaussian(sigma: float, size: int) -> np.ndarray:
    """Samples from the discrete Gaussian N_Z(0, sigma^2), vectorised over CSPRNG uniforms.

    The algorithm of ``discrete_gaussian_exact`` (discrete Laplace proposal with scale
    t = floor(sigma) + 1, accepted with probability exp(-(|y| - sigma^2/t)^2 / (2 sigma^2))), run
    on whole numpy arrays with the accept/reject decisions in float64; rejected positions are
    redrawn until all ``size`` are filled. The law is within about 5e-14 in total variation of the
    exact one (see the module docstring); the values are exact integers.

    Args:
        sigma: the scale sigma, 0 <= sigma <= 2^40 (the variance is ~sigma^2 for sigma >= 1).
        size: number of samples.

    Returns:
        int64 array of shape (size,) (all 0 when sigma = 0).

    Raises:
        ConfigurationError: ``sigma`` is negative, NaN, infinite, above 2^40 or not a number, or
            ``size`` is not an int >= 0.

    References: Canonne, Kamath, Steinke, The Discrete Gaussian for Differential Privacy, NeurIPS
        2020, Algorithms 2-3.
    """
    scale = check_scale(sigma, "sigma", MAX_SIGMA)
    count = check_size(size)
    if scale == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    t = math.floor(scale) + 1
    return fill_by_rejection(count, lambda n: _discrete_gaussian_candidates(scale, t, n), rate=0.3)
