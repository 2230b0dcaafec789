"""Sizing the distributed discrete mechanisms (TFF ``DistributedDpSumFactory``): how many standard
deviations the ring keeps, the scale s, and the sensitivities of a scaled, rounded client vector.

- ``modclip_k(p)``: k with P(|N(0, 1)| > k) = p (the number of standard deviations kept in 2^b).
- ``inflated_l2`` / ``inflated_l1``: upper bounds on the L2 / L1 norm of a scaled, rounded client
  vector (KLS21 Thm 1 / Prop 22); use them as the sensitivities of the integer-domain sum.
- ``heuristic_scale``: TFF's choice of s so that ``k_stddevs`` standard deviations of the summed,
  noised, rotated signal fit in 2^b bits. A utility heuristic, no privacy claim.

All pure (numpy, scipy, math); bad input raises ``ConfigurationError``. References as in
``secfl.privacy.discrete`` (KLS21, AKL21, CKS20).
"""

from __future__ import annotations

import math

from scipy import special

from secfl.exceptions import ConfigurationError
from secfl.privacy.rdp import check_count, check_finite

__all__ = ["MAX_SCALE", "modclip_k", "inflated_l2", "inflated_l1", "heuristic_scale"]

MAX_SCALE = 1e6
"""Cap on the heuristic scale (TFF's ``MAX_SCALE_FACTOR``)."""


# ---------------------------------------------------------------- rounding, scale, sensitivity


def modclip_k(prob: float) -> float:
    """Number of standard deviations k with P(|N(0, 1)| > k) = prob.

    Args:
        prob: the tolerated probability that a coordinate of the noised sum wraps around mod 2^b.

    Returns:
        k = sqrt(2) * erfcinv(prob); about 3.89 at prob = 1e-4.

    Raises:
        ConfigurationError: prob not in (0, 1).

    References:
        TFF ``DistributedDpSumFactory`` (``modclip_prob``).
    """
    p = check_finite("modclip_prob", prob)
    if not 0.0 < p < 1.0:
        raise ConfigurationError(f"modclip_prob={prob!r}: must be in (0, 1), e.g. 1e-4")
    return math.sqrt(2.0) * float(special.erfcinv(p))


def inflated_l2(c: float, scale: float, dim: int, beta: float) -> float:
    """L2 norm bound of a client vector after scaling and (conditional) randomized rounding.

    A vector x with ||x||_2 <= c is multiplied by ``scale`` and each coordinate is rounded up or
    down at random (unbiased). With beta > 0 the rounding is retried until the result meets the
    second bound below (it does so with probability >= 1 - beta per try).

    Args:
        c: L2 clip norm (unscaled).
        scale: the scale s (> 0).
        dim: the dimension d (after any padding for the rotation).
        beta: conditional rounding parameter in [0, 1); 0 disables conditioning.

    Returns:
        Delta_2 in the scaled integer domain:
        min(c s + sqrt(d), sqrt(c^2 s^2 + d/4 + sqrt(2 ln(1/beta)) (c s + sqrt(d)/2)));
        the second term only when beta > 0.

    Raises:
        ConfigurationError: negative c, non-positive scale, dim < 1, beta outside [0, 1).

    References:
        [KLS21] Thm 1 / Prop 22; TFF ``discretization.inflated_l2_norm_bound``.
    """
    c = check_finite("l2_clip", c, low=0.0)
    s = check_finite("scale", scale, low=0.0, strict=True)
    d = check_count("dim", dim)
    b = check_finite("beta", beta, low=0.0)
    if b >= 1.0:
        raise ConfigurationError(f"beta={beta!r}: must be in [0, 1) (0 disables conditional rounding)")
    cs = c * s
    plain = cs + math.sqrt(d)
    if b == 0.0:
        return plain
    conditioned = math.sqrt(cs * cs + d / 4.0 + math.sqrt(2.0 * math.log(1.0 / b)) * (cs + math.sqrt(d) / 2.0))
    return min(plain, conditioned)


def inflated_l1(l2: float, dim: int) -> float:
    """L1 norm bound of an integer vector with L2 norm at most ``l2``.

    Args:
        l2: L2 bound of the integer (scaled, rounded) vector, e.g. from ``inflated_l2``.
        dim: the dimension d.

    Returns:
        Delta_1 = l2 * min(sqrt(d), l2): ||v||_1 <= sqrt(d) ||v||_2 always, and
        ||v||_1 <= ||v||_2^2 when every coordinate is an integer.

    Raises:
        ConfigurationError: negative l2 or dim < 1.

    References:
        [KLS21] Sec. 4; TFF ``distributed_dp`` (L1 bound of the Skellam query).
    """
    l2 = check_finite("l2", l2, low=0.0)
    d = check_count("dim", dim)
    return l2 * min(math.sqrt(d), l2)


def heuristic_scale(bits: int, clients: int, dim: int, c: float, local_stddev: float, k_stddevs: float) -> float:
    """TFF's heuristic scale: k standard deviations of the noised sum fit in ``bits`` bits.

    Solves 2^b = 2k sqrt(c^2 n^2 / d + (1/(4 s^2) + sigma^2) n) s for s (rho = 1, worst-case
    signal norm n c), i.e. s = sqrt(2^(2b) - n k^2) / (2k sqrt(c^2 n^2 / d + n sigma^2)), capped at
    ``MAX_SCALE``.

    Args:
        bits: bits per coordinate of the secure sum (the modulus is 2^bits).
        clients: expected number of clients n per round.
        dim: the dimension d (after padding).
        c: L2 clip norm (unscaled).
        local_stddev: each client's noise stddev sigma in UNSCALED units (z c / sqrt(n) for a
            central noise multiplier z).
        k_stddevs: k, e.g. ``modclip_k(1e-4)``.

    Returns:
        The scale s (> 0). A utility heuristic only: the privacy comes from the accounting.

    Raises:
        ConfigurationError: bits < log2(n) or 2^(2b) <= n k^2 (too few bits for this many
            clients), or a malformed argument.

    References:
        [KLS21] Sec. 4.2 and 4.4; TFF ``distributed_dp._heuristic_scale_factor``.
    """
    b = check_count("bits", bits)
    n = check_count("clients", clients)
    d = check_count("dim", dim)
    c = check_finite("l2_clip", c, low=0.0, strict=True)
    sigma = check_finite("local_stddev", local_stddev, low=0.0)
    k = check_finite("k_stddevs", k_stddevs, low=0.0, strict=True)
    if b < math.log2(n):
        raise ConfigurationError(
            f"bits={b} is below log2(clients)={math.log2(n):.2f}: the sum of {n} clients cannot fit; "
            f"use bits >= {math.ceil(math.log2(n))} (more bits) or fewer clients per round"
        )
    room = 2.0 ** (2 * b) - n * k * k
    if room <= 0:
        raise ConfigurationError(
            f"bits={b} is too few for clients={n} at k_stddevs={k:.3g} (needs 2^(2*bits) > clients*k^2): "
            "use more bits, fewer clients per round, or a larger modclip_prob"
        )
    scale = math.sqrt(room) / (2.0 * k * math.sqrt(c * c * n * n / d + n * sigma * sigma))
    return min(scale, MAX_SCALE)
