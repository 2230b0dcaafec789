"""Krum: the input closest to its n − f − 2 nearest neighbours."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.aggregators.distances import squared_distances
from secfl.exceptions import ConfigurationError

NEIGHBOUR_CHOICES = ("paper", "byzfl")


def check_neighbours(owner: str, neighbours: int | str) -> None:
    """Raise ConfigurationError unless ``neighbours`` is "paper", "byzfl" or an int >= 1."""
    if isinstance(neighbours, str):
        if neighbours not in NEIGHBOUR_CHOICES:
            raise ConfigurationError(
                f"{owner}(neighbours={neighbours!r}): must be one of {NEIGHBOUR_CHOICES} or an int >= 1"
            )
    elif not isinstance(neighbours, int) or isinstance(neighbours, bool) or neighbours < 1:
        raise ConfigurationError(
            f"{owner}(neighbours={neighbours!r}): must be one of {NEIGHBOUR_CHOICES} or an int >= 1"
        )


def krum_min_inputs(num_byzantine: int, neighbours: int | str) -> int:
    """Fewest rows the scores need: 2f + 3 (paper), 2f + 1 (ByzFL's own check), max(2f + 1, k + 1) (fixed k)."""
    if neighbours == "paper":
        return 2 * num_byzantine + 3
    if neighbours == "byzfl":
        return 2 * num_byzantine + 1
    return max(2 * num_byzantine + 1, neighbours + 1)


def neighbour_count(neighbours: int | str, n: int, num_byzantine: int) -> int:
    """k for n rows: n − f − 2 (paper), n − f − 1 (ByzFL) or the fixed int."""
    if neighbours == "paper":
        return n - num_byzantine - 2
    if neighbours == "byzfl":
        return n - num_byzantine - 1
    return neighbours


def krum_scores(sq_dists: np.ndarray, k: int) -> np.ndarray:
    """score_i = sum of the k smallest sq_dists[i, j] over j != i; sq_dists is [n, n], 0 <= k <= n − 1."""
    others = sq_dists.copy()
    np.fill_diagonal(others, np.inf)
    return np.sort(others, axis=1)[:, :k].sum(axis=1)


class Krum(BaseAggregator):
    """x_{i*} with i* = argmin_i score_i, score_i = Σ_{j ∈ N_i} ||x_i − x_j||².

    N_i is the set of the n − f − 2 rows closest to x_i among the OTHER rows (Blanchard et al.).
    Ties in the score go to the lowest index. Weights are validated but ignored: the rule selects
    one input, it does not average.

    Args:
        num_byzantine: f, the number of Byzantine inputs tolerated; needs n >= 2f + 3.
        neighbours: "paper" (default) for n − f − 2 neighbours; "byzfl" for ByzFL's n − f − 1
            (ByzFL takes the mean of those distances, which has the same argmin; it only requires
            n >= 2f + 1); or a fixed int k (needs n >= max(2f + 1, k + 1)).

    Guarantee: (α, f)-Byzantine resilient when 2f + 2 < n and η(n, f)·√d·σ < ||g|| (Blanchard et
        al. 2017). The output is always one of the inputs; a Byzantine row is chosen only if
        its score is at most every honest row's score.

    References: Blanchard, El Mhamdi, Guerraoui, Stainer, Machine Learning with Adversaries:
        Byzantine Tolerant Gradient Descent, NeurIPS 2017. ByzFL (LPD-EPFL/byzfl) Krum for the
        "byzfl" neighbour count.
    """

    name: ClassVar[str] = "krum"

    def __init__(self, num_byzantine: int = 0, *, neighbours: int | str = "paper") -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"Krum(num_byzantine={num_byzantine!r}): must be an int >= 0")
        check_neighbours("Krum", neighbours)
        self.num_byzantine = num_byzantine
        self.neighbours = neighbours
        self.min_inputs = krum_min_inputs(num_byzantine, neighbours)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        k = neighbour_count(self.neighbours, vectors.shape[0], self.num_byzantine)
        scores = krum_scores(squared_distances(vectors), k)
        return vectors[int(np.argmin(scores))].copy()

    def __repr__(self) -> str:
        return f"Krum(num_byzantine={self.num_byzantine}, neighbours={self.neighbours!r})"
