"""Coordinate-wise median."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError


class Median(BaseAggregator):
    """out_j = median_i x_ij (weights are ignored: the rule is rank-based).

    Args:
        num_byzantine: f, the number of Byzantine inputs tolerated; needs n >= 2f + 1.

    Guarantee: each coordinate lies within the range of the honest values when f < n/2.

    References: Yin et al., Byzantine-Robust Distributed Learning: Towards Optimal Statistical
        Rates, ICML 2018.
    """

    name: ClassVar[str] = "median"

    def __init__(self, num_byzantine: int = 0) -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"Median(num_byzantine={num_byzantine!r}): must be an int >= 0")
        self.num_byzantine = num_byzantine
        self.min_inputs = 2 * num_byzantine + 1

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        return np.median(vectors, axis=0)

    def __repr__(self) -> str:
        return f"Median(num_byzantine={self.num_byzantine})"
