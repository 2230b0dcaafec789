"""Privacy accounting for the distributed discrete Gaussian and distributed Skellam mechanisms.

Both mechanisms follow the TFF ``DistributedDpSumFactory`` pipeline: each client clips its update to
L2 norm c, multiplies it by a scale s, rounds it to integers (conditional randomized rounding), adds
its own integer noise share and the shares are summed inside a secure sum mod 2^b. All functions
here are pure (numpy, scipy and math only); every bad input raises ``ConfigurationError``.

What each function guarantees:

- ``modclip_k``, ``inflated_l2`` / ``inflated_l1``, ``heuristic_scale``: sizing the ring, the scale
  and the sensitivities (in ``secfl.privacy.discrete_scale``, re-exported here).
- ``ddg_rdp``: an upper bound on the per-round RDP of the sum of ``clients`` discrete Gaussian
  shares (KLS21 Prop 14 / Eq. 17), valid at any order > 1.
- ``skellam_rdp``: an upper bound on the per-round RDP of the Skellam mechanism (AKL21).
- ``ddg_epsilon`` / ``skellam_epsilon``: inflate, compute RDP, subsample and convert with
  ``secfl.privacy.rdp``, compose.

Units. "Scaled" means the integer domain after multiplying by s; "unscaled" means the domain of
the clipped float updates. ``ddg_rdp`` only uses the ratios sensitivity / noise stddev, so it can
be fed either domain as long as both are in the same one (``ddg_epsilon`` uses the scaled one).
``skellam_rdp`` takes unscaled sensitivities and variance plus the scale (the reference's
convention); with ``scale=1`` it is the integer-domain formula of AKL21.

Neighbouring relations. Poisson sampling (and ``sampling_rate=1`` with ``sampling="poisson"``) uses
add/remove-one neighbours, sensitivity = one client's bound. Sampling without replacement uses
replace-one neighbours: the sum moves by x - x', so ``ddg_epsilon`` / ``skellam_epsilon`` double
both sensitivities. ``wor_subsampled_rdp`` itself expects the replace-one RDP curve of the base
mechanism. ``dp_accounting``'s ``SampledWithoutReplacementDpEvent(GaussianDpEvent(z))`` uses base
RDP alpha / (2 z^2), i.e. it reads z as stddev / (replace-one sensitivity) = stddev / (2 C) for a
sum of vectors clipped to C; passing stddev / C there under-counts the RDP by 4x.

In all of these, the noise is assumed to come from exactly ``clients`` shares whatever the
neighbour (as in KLS21 and AKL21); client drop-outs lower the noise and need re-accounting.

References:
    [KLS21] Kairouz, Liu, Steinke. The Distributed Discrete Gaussian Mechanism for Federated
        Learning with Secure Aggregation. ICML 2021, arXiv 2102.06387.
    [AKL21] Agarwal, Kairouz, Liu. The Skellam Mechanism for Differentially Private Federated
        Learning. NeurIPS 2021, arXiv 2110.04995.
    [ZW19] Zhu, Wang. Poisson Subsampled Renyi Differential Privacy. ICML 2019 (PMLR 97).
    [WBK19] Wang, Balle, Kasiviswanathan. Subsampled Renyi Differential Privacy and Analytical
        Moments Accountant. AISTATS 2019, arXiv 1808.00087.
    [CKS20] Canonne, Kamath, Steinke. The Discrete Gaussian for Differential Privacy.
        NeurIPS 2020, arXiv 2004.00010, Prop 12.
"""

from __future__ import annotations

import math

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.privacy.discrete_scale import MAX_SCALE, heuristic_scale, inflated_l1, inflated_l2, modclip_k
from secfl.privacy.rdp import (ORDERS, SAMPLINGS, Orders, as_orders, check_count, check_finite, check_rate,
                               log_sum_exp, poisson_subsampled_rdp, rdp_to_epsilon, wor_subsampled_rdp)

__all__ = [
    "MAX_SCALE",  # the sizing functions live in discrete_scale
    "modclip_k",
    "inflated_l2",
    "inflated_l1",
    "heuristic_scale",
    "ddg_tau",
    "ddg_rdp",
    "skellam_rdp",
    "ddg_epsilon",
    "skellam_epsilon",
]

# ---------------------------------------------------------------- per-round RDP of the mechanisms


def ddg_tau(local_stddev: float, clients: int) -> float:
    """KLS21's non-Gaussianity term for a sum of discrete Gaussians.

    Args:
        local_stddev: each share's sigma, in integer units (scaled domain).
        clients: number of shares n.

    Returns:
        tau = 10 sum_{k=1}^{n-1} exp(-2 pi^2 sigma^2 k / (k + 1)), summed in log space; 0 for
        n = 1; about 7e-17 at sigma = 2 (the k = 1 term dominates); underflows to 0 from
        sigma ~ 9 on.

    Raises:
        ConfigurationError: sigma <= 0 or clients < 1.

    References:
        [KLS21] Thm 1.
    """
    sigma = check_finite("local_stddev", local_stddev, low=0.0, strict=True)
    n = check_count("clients", clients)
    if n == 1:
        return 0.0
    k = np.arange(1, n, dtype=np.float64)
    log_terms = math.log(10.0) - 2.0 * math.pi**2 * sigma * sigma * k / (k + 1.0)
    return math.exp(log_sum_exp(log_terms))


def ddg_rdp(orders: Orders, l2: float, l1: float, local_stddev: float, clients: int, dim: int) -> np.ndarray:
    """Per-round RDP of the sum of n discrete Gaussian shares in the integer domain.

    Each of ``clients`` clients adds N_Z(0, sigma^2) per coordinate; an integer shift with
    ||Delta||_2 <= l2 and ||Delta||_1 <= l1 (e.g. ``inflated_l2`` / ``inflated_l1``) is hidden.

    Args:
        orders: Renyi orders (> 1; need not be integers).
        l2: L2 sensitivity Delta_2 (scaled domain).
        l1: L1 sensitivity Delta_1 (scaled domain).
        local_stddev: each share's sigma in integer units; KLS21 needs sigma >= 1/2.
        clients: number of noise shares n.
        dim: the dimension d.

    Returns:
        eps(alpha) = min{alpha a^2/2 + tau d, alpha/2 (a^2 + 2 b tau + tau^2 d),
        alpha/2 (a + tau sqrt(d))^2} with a = l2/(sqrt(n) sigma), b = l1/(sqrt(n) sigma), tau from
        ``ddg_tau``. At tau = 0 it is the Gaussian RDP alpha a^2 / 2.

    Raises:
        ConfigurationError: sigma < 1/2, negative sensitivities, bad orders/counts.

    References:
        [KLS21] Thm 1, Prop 14 / Eq. 17.
    """
    alphas = as_orders(orders)
    l2 = check_finite("l2", l2, low=0.0)
    l1 = check_finite("l1", l1, low=0.0)
    sigma = check_finite("local_stddev", local_stddev, low=0.0, strict=True)
    n = check_count("clients", clients)
    d = check_count("dim", dim)
    if sigma < 0.5:
        raise ConfigurationError(
            f"local_stddev={sigma!r}: the distributed discrete Gaussian bound needs sigma >= 0.5 in "
            "integer units; increase the scale or the noise"
        )
    tau = ddg_tau(sigma, n)
    a = l2 / (math.sqrt(n) * sigma)
    b = l1 / (math.sqrt(n) * sigma)
    first = alphas * a * a / 2.0 + tau * d
    second = alphas / 2.0 * (a * a + 2.0 * b * tau + tau * tau * d)
    third = alphas / 2.0 * (a + tau * math.sqrt(d)) ** 2
    return np.minimum(np.minimum(first, second), third)


def skellam_rdp(orders: Orders, l2: float, l1: float, central_variance: float, scale: float) -> np.ndarray:
    """Per-round RDP of the (distributed) Skellam mechanism.

    The clients' Skellam shares sum to one Skellam with variance ``scale^2 * central_variance``
    in the integer domain (Skellam is closed under sums, so there is no tau term).

    Args:
        orders: Renyi orders (> 1).
        l2: L2 sensitivity Delta_2 in UNSCALED units (inflated scaled bound / scale).
        l1: L1 sensitivity Delta_1 in UNSCALED units (inflated scaled bound / scale).
        central_variance: mu, the variance of the summed noise in UNSCALED units
            (n * local_stddev_scaled^2 / scale^2).
        scale: s (> 0). With ``scale=1`` and integer-domain l2, l1, mu this is AKL21's formula as
            stated; the unscaled form is the same bound after substituting Delta -> s Delta,
            mu -> s^2 mu.

    Returns:
        eps(alpha) = alpha l2^2/(2 mu) + min{((2 alpha - 1) s l2^2 + 6 l1)/(4 s^3 mu^2),
        3 l1/(2 s mu)}. As s -> infinity it tends to the Gaussian RDP alpha l2^2/(2 mu).

    Raises:
        ConfigurationError: non-positive variance or scale, negative sensitivities, bad orders.

    References:
        [AKL21] Thm 3.5 (Skellam RDP); google-research ``distributed_dp`` accounting.
    """
    alphas = as_orders(orders)
    l2 = check_finite("l2", l2, low=0.0)
    l1 = check_finite("l1", l1, low=0.0)
    mu = check_finite("central_variance", central_variance, low=0.0, strict=True)
    s = check_finite("scale", scale, low=0.0, strict=True)
    gaussian = alphas * l2 * l2 / (2.0 * mu)
    small = ((2.0 * alphas - 1.0) * s * l2 * l2 + 6.0 * l1) / (4.0 * s**3 * mu * mu)
    large = 3.0 * l1 / (2.0 * s * mu)
    return gaussian + np.minimum(small, large)



# ---------------------------------------------------------------- end to end


def _sampled_composed(rdp: np.ndarray, alphas: np.ndarray, q: float, sampling: str, rounds: int) -> np.ndarray:
    if q < 1.0:
        if sampling == "poisson":
            rdp = poisson_subsampled_rdp(q, rdp, alphas)
        else:
            rdp = wor_subsampled_rdp(q, rdp, alphas)
    return rdp * rounds


def _common(
    l2_clip: float, scale: float, beta: float, dim: int, rounds: int, sampling_rate: float, sampling: str
) -> tuple[float, float, int, float]:
    """Validate the shared arguments; return (scaled Delta_2, scaled Delta_1, rounds, q)."""
    if sampling not in SAMPLINGS:
        raise ConfigurationError(f"sampling={sampling!r}: must be one of {SAMPLINGS}")
    t = check_count("rounds", rounds, low=0)
    q = check_rate(sampling_rate)
    l2 = inflated_l2(l2_clip, scale, dim, beta)
    l1 = inflated_l1(l2, dim)
    if sampling == "without_replacement":  # replace-one: the sum moves by x - x'
        l2, l1 = 2.0 * l2, 2.0 * l1
    return l2, l1, t, q


def ddg_epsilon(
    *,
    l2_clip: float,
    scale: float,
    beta: float,
    local_stddev_scaled: float,
    clients: int,
    dim: int,
    rounds: int,
    delta: float,
    sampling_rate: float = 1.0,
    sampling: str = "poisson",
    orders: Orders = ORDERS,
) -> float:
    """(epsilon, delta) of ``rounds`` rounds of the distributed discrete Gaussian.

    Inflates the sensitivities in the scaled domain (``inflated_l2(l2_clip, scale, dim, beta)``,
    ``inflated_l1``; doubled for ``"without_replacement"``, replace-one neighbours), computes
    ``ddg_rdp``, subsamples if ``sampling_rate < 1``, multiplies by ``rounds``, converts.

    Args:
        l2_clip: client L2 clip norm c (unscaled).
        scale: the scale s.
        beta: conditional rounding parameter in [0, 1).
        local_stddev_scaled: each client's discrete Gaussian sigma in integer units
            (= unscaled local stddev * s).
        clients: noise shares per round n.
        dim: dimension d (after padding).
        rounds: number of rounds T (>= 0).
        delta: target delta.
        sampling_rate: client sampling probability (Poisson) or fraction (without replacement).
        sampling: ``"poisson"`` (add/remove) or ``"without_replacement"`` (replace-one).
        orders: integer Renyi orders.

    Returns:
        epsilon.

    Raises:
        ConfigurationError: any bad argument.

    References:
        [KLS21]; [ZW19]; [WBK19]; [CKS20].
    """
    l2, l1, t, q = _common(l2_clip, scale, beta, dim, rounds, sampling_rate, sampling)
    alphas = as_orders(orders, integer=q < 1.0)
    rdp = ddg_rdp(alphas, l2, l1, local_stddev_scaled, clients, dim)
    return rdp_to_epsilon(alphas, _sampled_composed(rdp, alphas, q, sampling, t), delta)


def skellam_epsilon(
    *,
    l2_clip: float,
    scale: float,
    beta: float,
    local_stddev_scaled: float,
    clients: int,
    dim: int,
    rounds: int,
    delta: float,
    sampling_rate: float = 1.0,
    sampling: str = "poisson",
    orders: Orders = ORDERS,
) -> float:
    """(epsilon, delta) of ``rounds`` rounds of the distributed Skellam mechanism.

    Same pipeline and arguments as ``ddg_epsilon``, with ``local_stddev_scaled`` each client's
    Skellam share stddev in integer units (Sk(lambda, lambda), 2 lambda = its square): the scaled
    inflated sensitivities are divided by s, the central variance is mu = clients *
    local_stddev_scaled^2 / s^2 (unscaled), then ``skellam_rdp(orders, l2, l1, mu, s)``.

    References:
        [AKL21]; [ZW19]; [WBK19]; [CKS20].
    """
    l2, l1, t, q = _common(l2_clip, scale, beta, dim, rounds, sampling_rate, sampling)
    alphas = as_orders(orders, integer=q < 1.0)
    sigma = check_finite("local_stddev_scaled", local_stddev_scaled, low=0.0, strict=True)
    n = check_count("clients", clients)
    s = float(scale)
    mu = n * sigma * sigma / (s * s)
    rdp = skellam_rdp(alphas, l2 / s, l1 / s, mu, s)
    return rdp_to_epsilon(alphas, _sampled_composed(rdp, alphas, q, sampling, t), delta)
