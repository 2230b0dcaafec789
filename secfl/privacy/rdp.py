"""RDP of subsampled mechanisms and its conversion to (epsilon, delta), for any mechanism's RDP curve.

- ``poisson_subsampled_rdp``: an upper bound on the RDP of ANY mechanism run on a Poisson
  subsample (add/remove neighbours; Zhu & Wang 2019, general upper bound).
- ``wor_subsampled_rdp``: an upper bound on the RDP of ANY mechanism run on a fixed-size sample
  drawn without replacement (replace-one neighbours; Wang, Balle, Kasiviswanathan 2019, Thm 9);
  it expects the replace-one RDP curve of the base mechanism.
- ``rdp_to_epsilon``: an (epsilon, delta)-DP guarantee from an RDP curve, the same conversion
  ``dp_accounting`` uses (Canonne, Kamath, Steinke 2020 / Asoodeh et al. 2020).

These general bounds are looser than the Gaussian-specific ones of dp-accounting (their higher-order
terms do not vanish as the noise grows); they are what a mechanism without its own subsampled
analysis (the distributed discrete Gaussian, Skellam) can use. Every bad input raises ConfigurationError.

References:
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

__all__ = ["ORDERS", "Orders", "poisson_subsampled_rdp", "wor_subsampled_rdp", "rdp_to_epsilon",
           "check_finite", "check_count", "check_rate", "as_orders", "log_sum_exp"]

ORDERS: tuple[int, ...] = tuple(range(2, 257)) + (512, 1024)
"""Integer Renyi orders: integers are needed by both subsampling bounds."""

SAMPLINGS = ("poisson", "without_replacement")

Orders = Sequence[float] | np.ndarray


# ---------------------------------------------------------------- validation helpers


def check_finite(name: str, value: float, *, low: float | None = None, strict: bool = False) -> float:
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


def check_count(name: str, value: int, *, low: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigurationError(f"{name}={value!r}: must be an integer >= {low}")
    return int(value)


def check_rate(q: float) -> float:
    q = check_finite("sampling_rate", q)
    if not 0.0 <= q <= 1.0:
        raise ConfigurationError(f"sampling_rate={q!r}: must be in [0, 1]")
    return q


def as_orders(orders: Orders, *, integer: bool = False) -> np.ndarray:
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


def log_sum_exp(x: np.ndarray) -> float:
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
        [ZW19] "General upper bound" for Poisson subsampling (Theorem 5 of the PMLR version in
        google-research ``distributed_dp``'s citation; the numbering was not re-checked against
        the PDF, the formula is).
    """
    q = check_rate(q)
    alphas = as_orders(orders, integer=True)
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
        bound = log_sum_exp(np.concatenate([head, rest])) / (alpha - 1)
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
    q = check_rate(q)
    alphas = as_orders(orders, integer=True)
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
        bound = log_sum_exp(np.concatenate([head, rest])) / (alpha - 1)
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
    alphas = as_orders(orders)
    r = _curve(alphas, rdp)
    delta = check_finite("delta", delta)
    if not 0.0 < delta < 1.0:
        raise ConfigurationError(f"delta={delta!r}: must be in (0, 1), e.g. 1e-5")
    with np.errstate(invalid="ignore", over="ignore"):
        eps = r + np.log1p(-1.0 / alphas) - np.log(delta * alphas) / (alphas - 1.0)
    eps = np.where(alphas > 1.01, eps, np.inf)
    eps = np.where(delta * delta + np.expm1(-r) > 0, 0.0, eps)
    return max(0.0, float(np.min(eps)))


