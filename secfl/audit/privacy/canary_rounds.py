"""Per-round canary observations: what every release says about each canary, and the score built on them.

The one-run audit used to score a canary by its projection on the sum of everything released. The server
(and anyone holding the model after each round) sees more: one release per round. ``CanaryRounds``
records, every round t and canary i,

    x[t, i] = < S_t, u_i >        S_t = the round's aggregate times the survivors' total weight

(``S_t`` is the decoded sum when the aggregator is the weighted mean; the sum scale keeps a canary's
signal the same in every round however many clients took part), and whether canary i's vector reached
that sum (``delivered``: its slot survived the round). For the Gaussian estimate it also records the
projection on the canary's own group sum (``own_group``; the sum the accountant prices, which the server
sees) and what the other in-canaries of that group add to it (``crosstalk``). ``delivered``, the groups
and the crosstalk are the defender's knowledge: they never enter the score below, only the Gaussian
estimate (``secfl.audit.privacy.gaussian_audit``). It also keeps the noise multiplier the pipeline reports
for each round, for the fresh-noise test (``secfl.audit.privacy.fresh_noise``).

``likelihood_scores`` turns the releases alone into the most powerful score against the claimed mechanism:
the log-likelihood ratio of "canary i is in" over "it is out" when each round it is sampled with the rate
q and observed in Gaussian noise,

    score_i(T) = sum_{t <= T} log(1 - q + q exp((c x[t, i] - c^2 / 2) / s^2))

with c the canary's norm and s the noise's scale, estimated from all observations without looking at
which canaries are in (1.4826 times the median absolute deviation), so the one-run bound stays valid.

Threat model: as ``secfl.audit.privacy.canaries``; the auditor is the defender and knows everything.
"""

from __future__ import annotations

import math

import dp_accounting
import numpy as np

from secfl.audit.privacy.canaries import Canaries
from secfl.exceptions import ConfigurationError

__all__ = ["CanaryRounds", "likelihood_scores", "noise_scale"]

#: Canary directions are kept in memory (float32) up to this many numbers, and made again each round above it.
CACHE_LIMIT = 1 << 25


class CanaryRounds:
    """An engine observer: each round's projections of the released sum, and of each canary's own group sum,
    on every canary direction."""

    def __init__(self, canaries: Canaries) -> None:
        self.canaries = canaries
        m, d = len(canaries.slots), canaries.dim
        self._directions = (np.stack([canaries.direction(i) for i in range(m)]).astype(np.float32)
                            if m * d <= CACHE_LIMIT else None)
        self._slots = {int(c): i for i, c in enumerate(canaries.slots)}
        self._rows: list[np.ndarray] = []
        self._own: list[np.ndarray] = []
        self._groups: list[np.ndarray] = []
        self._delivered: list[np.ndarray] = []
        self._multipliers: list[float] = []

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """``<vectors[k], u_i>`` for every canary i: float64 [m, k] (``vectors`` [k, d])."""
        v = np.asarray(vectors, dtype=np.float64)
        if self._directions is not None:
            return (self._directions @ v.T.astype(np.float32)).astype(np.float64)
        return np.stack([v @ self.canaries.direction(i) for i in range(len(self._slots))])

    def __call__(self, seen: object) -> None:
        out, t = seen.output, len(self._rows)  # type: ignore[attr-defined]
        weights = np.asarray(out.group_weights, dtype=np.float64)
        total = np.asarray(out.aggregate, dtype=np.float64) * float(np.sum(weights))
        sums = np.asarray(out.group_means, dtype=np.float64) * weights[:, None]  # each group's decoded sum
        m = len(self._slots)
        delivered, group = np.zeros(m, dtype=bool), (np.arange(m) + t) % max(1, len(sums))
        for g, alive in enumerate(out.result.survivors):
            for cid in alive:
                index = self._slots.get(int(cid))
                if index is not None:
                    delivered[index], group[index] = True, g
        projections = self.project(np.vstack([total[None, :], sums]))
        self._rows.append(projections[:, 0])
        self._own.append(projections[np.arange(m), 1 + group])
        self._groups.append(group)
        self._delivered.append(delivered)
        event = getattr(out, "dp_event", None)
        self._multipliers.append(float(event.noise_multiplier) if isinstance(event, dp_accounting.GaussianDpEvent)
                                 else math.nan)

    @property
    def observations(self) -> np.ndarray:
        """x on the released sum: float64 [rounds, m] (what anyone who sees the releases sees)."""
        return np.array(self._rows, dtype=np.float64).reshape(len(self._rows), len(self._slots))

    @property
    def own_group(self) -> np.ndarray:
        """x on each canary's own group sum (a canary that was not in the round: a group chosen by its index):
        float64 [rounds, m]. The server sees each group's sum; the accountant prices one group's."""
        return np.array(self._own, dtype=np.float64).reshape(len(self._own), len(self._slots))

    @property
    def groups(self) -> list[np.ndarray]:
        """Per round, int [m]: the group each canary's own-group projection was taken on."""
        return list(self._groups)

    @property
    def delivered(self) -> np.ndarray:
        """bool [rounds, m]: canary i's slot took part in round t (its vector, or its zeros, is in S_t)."""
        return np.array(self._delivered, dtype=bool).reshape(len(self._delivered), len(self._slots))

    @property
    def noise_multipliers(self) -> np.ndarray:
        """float64 [rounds]: the noise multiplier the pipeline reports for each round (its smallest group's
        realized one; NaN when the round's privacy event is not Gaussian)."""
        return np.array(self._multipliers, dtype=np.float64)

    def crosstalk(self, included: np.ndarray, signal: float) -> np.ndarray | None:
        """float64 [rounds, m]: what the other in-canaries in the same group sum add to canary i's own-group
        projection, ``signal * sum_j <u_j, u_i>`` with ``signal`` the canaries' norm after clipping (None when
        the directions are not kept in memory)."""
        if self._directions is None:
            return None
        gram = (self._directions @ self._directions.T).astype(np.float64)
        np.fill_diagonal(gram, 0.0)
        inc = np.asarray(included, dtype=bool)
        out = np.zeros((len(self._own), len(self._slots)))
        for t, (group, delivered) in enumerate(zip(self._groups, self._delivered, strict=True)):
            present = delivered & inc
            for g in np.unique(group):
                mine = group == g
                out[t, mine] = gram[np.ix_(mine, mine & present)].sum(axis=1)
        return out * signal


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
