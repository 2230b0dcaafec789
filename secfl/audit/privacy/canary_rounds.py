"""Per-round canary observations: what every release says about each canary, and the score built on them.

The one-run audit used to score a canary by its projection on the sum of everything released. The server
(and anyone holding the model after each round) sees more: one release per round. ``CanaryRounds``
records, every round t and canary i,

    x[t, i] = < S_t, u_i >        S_t = the round's aggregate times the survivors' total weight

(``S_t`` is the decoded sum when the aggregator is the weighted mean; the sum scale keeps a canary's
signal the same in every round however many clients took part), and whether canary i's vector reached
that sum (``delivered``: its slot survived the round). ``delivered`` is the defender's knowledge: it never
enters a score, only the Gaussian estimate (``secfl.audit.privacy.gaussian_audit``).

``likelihood_scores`` turns the releases alone into the most powerful score against the claimed mechanism:
the log-likelihood ratio of "canary i is in" over "it is out" when each round it is sampled with the rate
q and observed in Gaussian noise,

    score_i(T) = sum_{t <= T} log(1 - q + q exp((c x[t, i] - c^2 / 2) / s^2))

with c the canary's norm and s the noise's scale, estimated from all observations without looking at
which canaries are in (1.4826 times the median absolute deviation), so the one-run bound stays valid.

Threat model: as ``secfl.audit.privacy.canaries``; the auditor is the defender and knows everything.
"""

from __future__ import annotations

import numpy as np

from secfl.audit.privacy.canaries import Canaries
from secfl.exceptions import ConfigurationError

__all__ = ["CanaryRounds", "likelihood_scores", "noise_scale"]

#: Canary directions are kept in memory (float32) up to this many numbers, and made again each round above it.
CACHE_LIMIT = 1 << 25


class CanaryRounds:
    """An engine observer: each round's projections of the released sum on every canary direction."""

    def __init__(self, canaries: Canaries) -> None:
        self.canaries = canaries
        m, d = len(canaries.slots), canaries.dim
        self._directions = (np.stack([canaries.direction(i) for i in range(m)]).astype(np.float32)
                            if m * d <= CACHE_LIMIT else None)
        self._slots = {int(c): i for i, c in enumerate(canaries.slots)}
        self._rows: list[np.ndarray] = []
        self._delivered: list[np.ndarray] = []

    def project(self, total: np.ndarray) -> np.ndarray:
        """``<total, u_i>`` for every canary (float64 [m])."""
        if self._directions is not None:
            return (self._directions @ np.asarray(total, dtype=np.float32)).astype(np.float64)
        return self.canaries.scores(total)

    def __call__(self, seen: object) -> None:
        out = seen.output  # type: ignore[attr-defined]
        total = np.asarray(out.aggregate, dtype=np.float64) * float(np.sum(out.group_weights))
        self._rows.append(self.project(total))
        delivered = np.zeros(len(self._slots), dtype=bool)
        for group in out.result.survivors:
            for cid in group:
                index = self._slots.get(int(cid))
                if index is not None:
                    delivered[index] = True
        self._delivered.append(delivered)

    @property
    def observations(self) -> np.ndarray:
        """x: float64 [rounds, m]."""
        return np.array(self._rows, dtype=np.float64).reshape(len(self._rows), len(self._slots))

    @property
    def delivered(self) -> np.ndarray:
        """bool [rounds, m]: canary i's slot took part in round t (its vector, or its zeros, is in S_t)."""
        return np.array(self._delivered, dtype=bool).reshape(len(self._delivered), len(self._slots))


def noise_scale(observations: np.ndarray) -> float:
    """A robust scale of the observations (1.4826 MAD around the median), blind to which canaries are in."""
    x = np.asarray(observations, dtype=np.float64).ravel()
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ConfigurationError("the canary observations must be finite and not empty")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def likelihood_scores(observations: np.ndarray, *, signal: float, noise: float, rate: float) -> np.ndarray:
    """The cumulative log-likelihood-ratio scores: float64 [rounds, m], row T-1 scores the first T rounds.

    ``signal`` c > 0, ``noise`` s > 0 and ``rate`` q in (0, 1] as in the module doc. With q = 1 (every client
    every round) the score is the canary's summed projection times c / s^2, as it should be.

    Raises:
        ConfigurationError: observations not a finite 2-D array, or a parameter out of range.
    """
    x = np.asarray(observations, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ConfigurationError(f"observations must be a finite [rounds, canaries] array, got shape {x.shape}")
    for name, value in (("signal", signal), ("noise", noise)):
        if not (np.isfinite(value) and value > 0):
            raise ConfigurationError(f"{name}={value!r} must be a finite number > 0")
    if not 0 < rate <= 1:
        raise ConfigurationError(f"rate={rate!r} must be in (0, 1]")
    shift = (signal * x - signal**2 / 2) / noise**2
    per_round = shift if rate == 1 else np.logaddexp(np.log1p(-rate), np.log(rate) + shift)
    return np.cumsum(per_round, axis=0)
