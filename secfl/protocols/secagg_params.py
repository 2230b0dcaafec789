"""Parameters of SecAgg/SecAgg+ for a group of n clients: neighbours k, threshold t, and the graph.

Derivation (after Bell et al., CCS 2020, with the targets FCP uses: sigma = 40, eta = 20). Dropouts
happen at rate delta and clients are corrupt (colluding with the server) at rate gamma,
independently. With the Harary graph H(n, k) under a random relabelling:

- Connectivity: the surviving honest clients stay connected (so no honest input is summed with
  fewer than all other survivors) unless some run of k/2 consecutive clients all drop or are corrupt;
  the union bound n (delta + gamma)^(k/2) <= 2^-sigma is required.
- Corrupt neighbours: c is the smallest count with n P[Bin(k, gamma) > c] <= 2^-sigma.
- Threshold t = floor((k + c) / 2) + 1: each honest neighbour reveals one share per client, so the
  server can never gather t self-mask shares and t key shares of the same client, even with the
  help of c corrupt neighbours (2t > k + c).
- Correctness: n P[Bin(k, 1 - delta) < t] <= 2^-eta (a client's shares are recoverable).
- Neighbourhood consistency: a client reveals shares only after t of its neighbours signed statements
  that list it as alive (see ``secagg_client`` and SPEC.md): with 2t > k + c, its honest neighbours
  cannot both confirm it alive (so it unmasks) and release its key shares (as if it dropped).

The smallest even k < n - 1 meeting all four is chosen; if none exists the complete graph (k = n - 1,
SecAgg) is used, whose failure probability is reported rather than guaranteed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from secfl.exceptions import ConfigurationError

MIN_GROUP = 3
MAX_GROUP = 1_000_000


@dataclass(frozen=True)
class SecAggParams:
    """The parameters of one group: ``n`` clients, ``neighbours`` k, ``threshold`` t."""

    n: int
    neighbours: int
    threshold: int
    corrupt_bound: int
    failure_log2: float  # log2 of the union-bounded probability that the round fails for lack of shares


def _pmf(k: int, p: float, j: int) -> float:
    """P[Bin(k, p) = j], in log space so that large k cannot overflow."""
    if p in (0.0, 1.0):
        return float(j == (k if p == 1.0 else 0))
    log = math.lgamma(k + 1) - math.lgamma(j + 1) - math.lgamma(k - j + 1) + j * math.log(p) + (k - j) * math.log1p(-p)
    return math.exp(log)


def _tail_above(k: int, p: float, c: int) -> float:
    """P[Bin(k, p) > c]."""
    return sum(_pmf(k, p, j) for j in range(c + 1, k + 1))


def _corrupt_bound(n: int, k: int, gamma: float, sigma: int) -> int:
    if gamma == 0:
        return 0
    return next((c for c in range(k + 1) if n * _tail_above(k, gamma, c) <= 2.0**-sigma), k)


def _failure_log2(n: int, k: int, t: int, delta: float) -> float:
    fail = n * sum(_pmf(k, 1 - delta, j) for j in range(t))  # n P[Bin(k, 1 - delta) < t]
    return math.log2(fail) if fail > 0 else -math.inf


def derive(
    n: int, *, dropout_rate: float, corrupt_rate: float, security_bits: int = 40, failure_bits: int = 20,
    complete: bool = False, neighbours: int | None = None, threshold: int | None = None,
) -> SecAggParams:
    """Choose (k, t) for a group of ``n`` clients, or check the user's overrides against the safe bounds.

    Raises:
        ConfigurationError: n out of range, rates outside [0, 0.5), or an override below the safe bound.
    """
    if not MIN_GROUP <= n <= MAX_GROUP:
        raise ConfigurationError(
            f"secure aggregation needs groups of {MIN_GROUP}..{MAX_GROUP} clients, got {n}; "
            "use larger buckets, or grouping 'individual' with the plaintext protocol"
        )
    for name, rate in (("dropout_rate", dropout_rate), ("corrupt_rate", corrupt_rate)):
        if not 0 <= rate < 0.5:
            raise ConfigurationError(f"{name}={rate!r} must be in [0, 0.5)")
    if neighbours is not None:
        if complete and neighbours != n - 1:
            raise ConfigurationError(f"SecAgg uses the complete graph: neighbours must be n - 1 = {n - 1}")
        if not (neighbours == n - 1 or (2 <= neighbours < n - 1 and neighbours % 2 == 0)):
            raise ConfigurationError(
                f"neighbours={neighbours} for a group of {n}: use an even k in 2..{n - 2} or n - 1 = {n - 1}"
            )
        candidates = [neighbours]
    else:
        candidates = [n - 1] if complete else [*range(2, n - 1, 2), n - 1]
    for k in candidates:
        c = _corrupt_bound(n, k, corrupt_rate, security_bits)
        safe_t = (k + c) // 2 + 1
        if safe_t > k:
            continue
        t = safe_t if threshold is None else threshold
        if not safe_t <= t <= k:
            raise ConfigurationError(
                f"threshold={threshold} for k={k} neighbours is outside the safe range {safe_t}..{k} "
                "(below it a malicious server could gather both shares of a client)"
            )
        split = n * (dropout_rate + corrupt_rate) ** (k // 2)
        if k < n - 1 and split > 2.0**-security_bits:
            if neighbours is not None:
                raise ConfigurationError(
                    f"neighbours={k}: dropouts at rate {dropout_rate} split a group of {n} with probability up to "
                    f"2^{math.log2(split):.1f} (> 2^-{security_bits}), revealing partial sums; raise neighbours"
                )
            continue
        failure = _failure_log2(n, k, t, dropout_rate)
        if failure <= -failure_bits or k == candidates[-1]:
            return SecAggParams(n, k, t, c, failure)
    raise ConfigurationError(
        f"no (neighbours, threshold) for a group of {n} reaches 2^-{security_bits} security with "
        f"corrupt_rate={corrupt_rate}; use larger groups or a lower corrupt_rate"
    )
