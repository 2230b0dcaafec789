"""Nearest-neighbour mixing: a pre-aggregator replacing each row by the mean of its n − f nearest rows."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import check_inputs
from secfl.aggregators.distances import squared_distances
from secfl.exceptions import ConfigurationError


class NearestNeighborMixing:
    """y_i = (1/(n − f)) Σ_{j ∈ N_i} x_j for every row i; returns [n, d].

    N_i is the set of the n − f rows nearest to x_i in Euclidean distance, x_i itself included
    (it is always first). Distance ties go to the lower index (a stable sort). This reproduces
    ByzFL's NNM(f), including its known answer on [[1,2,3],[4,5,6],[7,8,9]]; ByzFL 0.0.11 itself
    uses np.argpartition, whose order on ties is unspecified. The result is
    computed as W @ X with W the [n, n] matrix W_ij = 1/(n − f) for j ∈ N_i and 0 elsewhere, from
    one Gram matrix: never an [n, n − f, d] gather as in ByzFL. Weights are validated but ignored:
    they stay with the rule applied after the mixing.

    Args:
        num_byzantine: f, the number of Byzantine inputs tolerated; needs n >= f + 1.

    Guarantee: for any (f, κ)-robust aggregator F, F ∘ NNM is (f, κ')-robust with
        κ' of order f/(n − f)·(κ + 1), order-optimal under heterogeneity for rules such as
        trimmed mean, median, geometric median and Krum (Allouah et al. 2023).

    References: Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, Fixing by Mixing: A Recipe
        for Optimal Byzantine ML under Heterogeneity, AISTATS 2023. ByzFL (LPD-EPFL/byzfl) NNM.
    """

    name: ClassVar[str] = "nnm"
    pre: ClassVar[bool] = True

    def __init__(self, num_byzantine: int = 0) -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"NearestNeighborMixing(num_byzantine={num_byzantine!r}): must be an int >= 0")
        self.num_byzantine = num_byzantine
        self.min_inputs = num_byzantine + 1

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        return self._mixing(vectors) @ vectors

    def mixing_matrix(self, vectors: np.ndarray) -> np.ndarray:
        """W [n, n] with NNM(x) = W @ x: W_ij = 1/(n − f) if x_j is one of the n − f nearest rows of x_i."""
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, None)
        return self._mixing(vectors)

    def _mixing(self, vectors: np.ndarray) -> np.ndarray:
        n = vectors.shape[0]
        k = n - self.num_byzantine
        order = squared_distances(vectors)
        np.fill_diagonal(order, -1.0)  # each row is its own first neighbour, even among exact duplicates
        nearest = np.argsort(order, axis=1, kind="stable")[:, :k]
        mixing = np.zeros((n, n))
        mixing[np.arange(n)[:, None], nearest] = 1.0 / k
        return mixing

    def __repr__(self) -> str:
        return f"NearestNeighborMixing(num_byzantine={self.num_byzantine})"
