"""Privacy accounting for the distributed discrete Gaussian and distributed Skellam mechanisms.

Both mechanisms follow the TFF ``DistributedDpSumFactory`` pipeline: each client clips its update to
L2 norm c, multiplies it by a scale s, rounds it to integers (conditional randomized rounding), adds
its own integer noise share and the shares are summed inside a secure sum mod 2^b. All functions
here are pure (numpy, scipy and math only); every bad input raises ``ConfigurationError``.

What each function guarantees:

- ``modclip_k(p)``: k with P(|N(0, 1)| > k) = p (the number of standard deviations kept in 2^b).
- ``inflated_l2`` / ``inflated_l1``: upper bounds on the L2 / L1 norm of a scaled, rounded client
  vector (KLS21 Thm 1 / Prop 22); use them as the sensitivities of the integer-domain sum.
- ``heuristic_scale``: TFF's choice of s so that ``k_stddevs`` standard deviations of the summed,
  noised, rotated signal fit in 2^b bits. A utility heuristic, no privacy claim.
- ``ddg_rdp``: an upper bound on the per-round RDP of the sum of ``clients`` discrete Gaussian
  shares (KLS21 Prop 14 / Eq. 17), valid at any order > 1.
- ``skellam_rdp``: an upper bound on the per-round RDP of the Skellam mechanism (AKL21).
- ``poisson_subsampled_rdp``: an upper bound on the RDP of ANY mechanism run on a Poisson
  subsample (add/remove neighbours; Zhu & Wang 2019, general upper bound).
- ``wor_subsampled_rdp``: an upper bound on the RDP of ANY mechanism run on a fixed-size sample
  drawn without replacement (replace-one neighbours; Wang, Balle, Kasiviswanathan 2019, Thm 9).
- ``rdp_to_epsilon``: an (epsilon, delta)-DP guarantee from an RDP curve, the same conversion
  ``dp_accounting`` uses (Canonne, Kamath, Steinke 2020 / Asoodeh et al. 2020).
- ``ddg_epsilon`` / ``skellam_epsilon``: inflate, compute RDP, subsample, compose, convert.

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
from collections.abc import Sequence

import numpy as np
from scipy import special

from secfl.exceptions import ConfigurationError

__all__ = [
    "ORDERS",
    "MAX_SCALE",
    "modclip_k",
    "inflated_l2",
    "inflated_l1",
    "heuristic_scale",
    "ddg_tau",
    "ddg_rdp",
    "skellam_rdp",
    "poisson_subsampled_rdp",
    "wor_subsampled_rdp",
    "rdp_to_epsilon",
    "ddg_epsilon",
    "skellam_epsilon",
]

ORDERS: tuple[int, ...] = tuple(range(2, 257)) + (512, 1024)
"""Integer Renyi orders: integers are needed by both subsampling bounds."""

MAX_SCALE = 1e6
"""Cap on the heuristic scale (TFF's ``MAX_SCALE_FACTOR``)."""

SAMPLINGS = ("poisson", "without_replacement")

Orders = Sequence[float] | np.ndarray


# ---------------------------------------------------------------- validation helpers


def _finite(name: str, value: float, *, low: float | None = None, strict: bool = False) -> float:
    """Return ``value`` as a float, or raise if it is not finite or not above ``low``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{name}={value!r}: must be a number") from None
    if not math.isfinite(x):
        raise ConfigurationError(f"{name}={value!r}: must be finite")
    if low is not None and (x <= low if strict else x < low):
        relation = ">" if strict else ">="
        raise ConfigurationError(f"{name}={value!r}: must be {relation} {low}")
    return x


def _count(name: str, value: int, *, low: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigurationError(f"{name}={value!r}: must be an integer >= {low}")
    return int(value)


def _rate(q: float) -> float:
    q = _finite("sampling_rate", q)
    if not 0.0 <= q <= 1.0:
        raise ConfigurationError(f"sampling_rate={q!r}: must be in [0, 1]")
    return q


def _orders(orders: Orders, *, integer: bool = False) -> np.ndarray:
    """Orders as a float array, all > 1 (all integers >= 2 if ``integer``)."""
    a = np.asarray(orders, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 1.0):
        raise ConfigurationError("orders: need a non-empty list of finite Renyi orders > 1")
    if integer and np.any(a != np.floor(a)):
        raise ConfigurationError(
            "orders: the subsampling bounds hold at integer orders only; use integer orders >= 2 "
            "(e.g. secfl.privacy.discrete.ORDERS)"
        )
    return a


def _curve(orders: np.ndarray, rdp: Orders) -> np.ndarray:
    r = np.asarray(rdp, dtype=np.float64).reshape(-1)
    if r.shape != orders.shape:
        raise ConfigurationError(f"rdp: has {r.size} values for {orders.size} orders")
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise ConfigurationError("rdp: RDP values must be >= 0 (inf allowed), not NaN")
    return r


def _log_sum_exp(x: np.ndarray) -> float:
    """log(sum(exp(x))) that returns +inf if any term is +inf and -inf if all are -inf."""
    top = float(np.max(x))
    if math.isinf(top):
        return top
    return top + math.log(float(np.sum(np.exp(x - top))))


def _log_comb(n: int, k: np.ndarray) -> np.ndarray:
    return special.gammaln(n + 1) - special.gammaln(k + 1) - special.gammaln(n - k + 1)


def _envelope(orders: np.ndarray, rdp: np.ndarray, top: int) -> np.ndarray:
    """RDP upper bounds at every integer order 0..top from a curve given at some integer orders.

    RDP is non-decreasing in the order (van Erven & Harremoes 2014, Thm 3), so the true value at
    an integer l is at most the given value at any given order >= l: use the smallest of those.
    Entries 0 and 1 are unused.
    """
    order_idx = np.argsort(orders)
    sorted_orders = orders[order_idx]
    suffix_min = np.minimum.accumulate(rdp[order_idx][::-1])[::-1]
    ls = np.arange(top + 1, dtype=np.float64)
    pos = np.searchsorted(sorted_orders, ls, side="left")
    pos = np.minimum(pos, sorted_orders.size - 1)  # only orders <= top are ever looked up
    return suffix_min[pos]


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
    p = _finite("modclip_prob", prob)
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
    c = _finite("l2_clip", c, low=0.0)
    s = _finite("scale", scale, low=0.0, strict=True)
    d = _count("dim", dim)
    b = _finite("beta", beta, low=0.0)
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
    l2 = _finite("l2", l2, low=0.0)
    d = _count("dim", dim)
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
    b = _count("bits", bits)
    n = _count("clients", clients)
    d = _count("dim", dim)
    c = _finite("l2_clip", c, low=0.0, strict=True)
    sigma = _finite("local_stddev", local_stddev, low=0.0)
    k = _finite("k_stddevs", k_stddevs, low=0.0, strict=True)
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
    sigma = _finite("local_stddev", local_stddev, low=0.0, strict=True)
    n = _count("clients", clients)
    if n == 1:
        return 0.0
    k = np.arange(1, n, dtype=np.float64)
    log_terms = math.log(10.0) - 2.0 * math.pi**2 * sigma * sigma * k / (k + 1.0)
    return math.exp(_log_sum_exp(log_terms))


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
    alphas = _orders(orders)
    l2 = _finite("l2", l2, low=0.0)
    l1 = _finite("l1", l1, low=0.0)
    sigma = _finite("local_stddev", local_stddev, low=0.0, strict=True)
    n = _count("clients", clients)
    d = _count("dim", dim)
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
    alphas = _orders(orders)
    l2 = _finite("l2", l2, low=0.0)
    l1 = _finite("l1", l1, low=0.0)
    mu = _finite("central_variance", central_variance, low=0.0, strict=True)
    s = _finite("scale", scale, low=0.0, strict=True)
    gaussian = alphas * l2 * l2 / (2.0 * mu)
    small = ((2.0 * alphas - 1.0) * s * l2 * l2 + 6.0 * l1) / (4.0 * s**3 * mu * mu)
    large = 3.0 * l1 / (2.0 * s * mu)
    return gaussian + np.minimum(small, large)


# ---------------------------------------------------------------- subsampling


def poisson_subsampled_rdp(q: float, rdp: Orders, orders: Orders) -> np.ndarray:
    """RDP of any mechanism run on a Poisson subsample (each record kept with probability q).

    Add/remove-one neighbours; ``rdp`` must be the base mechanism's RDP curve for add/remove.

    For each integer order alpha:
    eps'(alpha) <= 1/(alpha-1) log{(1-q)^(alpha-1) (alpha q - q + 1)
                   + C(alpha,2) q^2 (1-q)^(alpha-2) e^eps(2)
                   + 3 sum_{l=3}^{alpha} C(alpha,l) (1-q)^(alpha-l) q^l e^((l-1) eps(l))},
    computed in log space, then min'ed with the unsampled eps(alpha). eps(l) at integer orders
    missing from ``orders`` is bounded by the smallest given value at an order >= l (RDP is
    non-decreasing in the order), which keeps the result an upper bound.

    Args:
        q: sampling probability in [0, 1].
        rdp: the base mechanism's RDP at ``orders``.
        orders: integer orders >= 2.

    Returns:
        The subsampled RDP at ``orders`` (zeros if q = 0; ``rdp`` unchanged if q = 1).

    Raises:
        ConfigurationError: q outside [0, 1], non-integer orders, malformed rdp.

    References:
        [ZW19] "General upper bound" for Poisson subsampling. The brief names it Theorem 6; the
        secfl reference notes and google-research ``distributed_dp`` call it Theorem 5 of the
        PMLR version (numbering not re-checked against the PDF; the formula is the same).
    """
    q = _rate(q)
    alphas = _orders(orders, integer=True)
    base = _curve(alphas, rdp)
    if q == 0.0:
        return np.zeros_like(base)
    if q == 1.0:
        return base.copy()
    top = int(alphas.max())
    env = _envelope(alphas, base, top)
    log_q, log_1mq = math.log(q), math.log1p(-q)
    out = np.empty_like(base)
    for i, alpha_f in enumerate(alphas):
        alpha = int(alpha_f)
        ls = np.arange(3, alpha + 1, dtype=np.float64)
        rest = (
            math.log(3.0)
            + _log_comb(alpha, ls)
            + (alpha - ls) * log_1mq
            + ls * log_q
            + (ls - 1.0) * env[3 : alpha + 1]
        )
        head = [
            (alpha - 1) * log_1mq + math.log1p((alpha - 1) * q),
            float(_log_comb(alpha, np.float64(2.0))) + 2.0 * log_q + (alpha - 2) * log_1mq + env[2],
        ]
        bound = _log_sum_exp(np.concatenate([head, rest])) / (alpha - 1)
        out[i] = min(max(bound, 0.0), base[i])
    return out


def wor_subsampled_rdp(q: float, rdp: Orders, orders: Orders) -> np.ndarray:
    """RDP of any mechanism run on a uniform fixed-size sample without replacement.

    Replace-one neighbours (the population size is public); ``rdp`` must be the base mechanism's
    RDP curve for REPLACE-ONE neighbours of the sample, e.g. for a sum of vectors clipped to C
    the Gaussian curve with sensitivity 2C (see the module docstring on dp_accounting).

    For each integer order alpha, with eps(inf) = inf in WBK19's bound:
    eps'(alpha) <= 1/(alpha-1) log(1 + q^2 C(alpha,2) min{4 (e^eps(2) - 1), 2 e^eps(2)}
                   + sum_{j=3}^{alpha} 2 q^j C(alpha,j) e^((j-1) eps(j))),
    computed in log space, then min'ed with the unsampled eps(alpha). Missing integer orders are
    bounded as in ``poisson_subsampled_rdp``.

    Args:
        q: sample size / population size, in [0, 1].
        rdp: the base mechanism's replace-one RDP at ``orders``.
        orders: integer orders >= 2.

    Returns:
        The subsampled RDP at ``orders`` (zeros if q = 0; ``rdp`` unchanged if q = 1).

    Raises:
        ConfigurationError: q outside [0, 1], non-integer orders, malformed rdp.

    References:
        [WBK19] Thm 9 (general upper bound). dp_accounting's Gaussian-only WOR accountant uses
        the tighter Thm 27 of the arXiv version; this bound is never below it.
    """
    q = _rate(q)
    alphas = _orders(orders, integer=True)
    base = _curve(alphas, rdp)
    if q == 0.0:
        return np.zeros_like(base)
    if q == 1.0:
        return base.copy()
    top = int(alphas.max())
    env = _envelope(alphas, base, top)
    log_q = math.log(q)
    eps2 = float(env[2])
    with np.errstate(divide="ignore"):
        log_4_expm1 = math.log(4.0) + eps2 + float(np.log(-np.expm1(-eps2))) if eps2 > 0 else -math.inf
    second_factor = min(log_4_expm1, math.log(2.0) + eps2)
    out = np.empty_like(base)
    for i, alpha_f in enumerate(alphas):
        alpha = int(alpha_f)
        js = np.arange(3, alpha + 1, dtype=np.float64)
        rest = math.log(2.0) + js * log_q + _log_comb(alpha, js) + (js - 1.0) * env[3 : alpha + 1]
        head = [0.0, 2.0 * log_q + float(_log_comb(alpha, np.float64(2.0))) + second_factor]
        bound = _log_sum_exp(np.concatenate([head, rest])) / (alpha - 1)
        out[i] = min(max(bound, 0.0), base[i])
    return out


# ---------------------------------------------------------------- conversion


def rdp_to_epsilon(orders: Orders, rdp: Orders, delta: float) -> float:
    """The smallest epsilon such that an RDP curve implies (epsilon, delta)-DP.

    Per order: eps = rdp + log1p(-1/alpha) - log(delta alpha)/(alpha - 1); 0 if
    delta^2 + expm1(-rdp) > 0 (the KL bound delta <= sqrt(1 - e^-KL)); orders <= 1.01 are
    skipped. Identical to ``dp_accounting.rdp.compute_epsilon``.

    Args:
        orders: Renyi orders (> 1).
        rdp: RDP at ``orders`` (>= 0, inf allowed).
        delta: target delta in (0, 1).

    Returns:
        epsilon >= 0 (inf if every order is inf).

    Raises:
        ConfigurationError: delta outside (0, 1), malformed orders or rdp.

    References:
        [CKS20] Prop 12; Asoodeh, Liao, Calmon, Kosut, Sankar 2020 (arXiv 2001.05990), Eq. 20.
    """
    alphas = _orders(orders)
    r = _curve(alphas, rdp)
    delta = _finite("delta", delta)
    if not 0.0 < delta < 1.0:
        raise ConfigurationError(f"delta={delta!r}: must be in (0, 1), e.g. 1e-5")
    with np.errstate(invalid="ignore", over="ignore"):
        eps = r + np.log1p(-1.0 / alphas) - np.log(delta * alphas) / (alphas - 1.0)
    eps = np.where(alphas > 1.01, eps, np.inf)
    eps = np.where(delta * delta + np.expm1(-r) > 0, 0.0, eps)
    return max(0.0, float(np.min(eps)))


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
    t = _count("rounds", rounds, low=0)
    q = _rate(sampling_rate)
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
    alphas = _orders(orders, integer=q < 1.0)
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

    Same pipeline as ``ddg_epsilon``: the scaled inflated sensitivities are divided by s and the
    central variance is mu = clients * local_stddev_scaled^2 / s^2 (unscaled), then
    ``skellam_rdp(orders, l2, l1, mu, s)``.

    Args:
        l2_clip: client L2 clip norm c (unscaled).
        scale: the scale s.
        beta: conditional rounding parameter in [0, 1).
        local_stddev_scaled: each client's Skellam share stddev in integer units (its variance is
            local_stddev_scaled^2, i.e. Sk(lambda, lambda) with 2 lambda = that variance).
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
        [AKL21]; [ZW19]; [WBK19]; [CKS20].
    """
    l2, l1, t, q = _common(l2_clip, scale, beta, dim, rounds, sampling_rate, sampling)
    alphas = _orders(orders, integer=q < 1.0)
    sigma = _finite("local_stddev_scaled", local_stddev_scaled, low=0.0, strict=True)
    n = _count("clients", clients)
    s = float(scale)
    mu = n * sigma * sigma / (s * s)
    rdp = skellam_rdp(alphas, l2 / s, l1 / s, mu, s)
    return rdp_to_epsilon(alphas, _sampled_composed(rdp, alphas, q, sampling, t), delta)
