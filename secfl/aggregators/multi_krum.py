"""Multi-Krum: the (weighted) mean of the m inputs with the smallest Krum scores."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.aggregators.distances import squared_distances
from secfl.aggregators.krum import check_neighbours, krum_min_inputs, krum_scores, neighbour_count
from secfl.exceptions import ConfigurationError


class MultiKrum(BaseAggregator):
    """Σ_{i ∈ S} w_i x_i / Σ_{i ∈ S} w_i, S = the m rows with the smallest Krum scores.

    score_i = Σ_{j ∈ N_i} ||x_i − x_j||², N_i the n − f − 2 rows closest to x_i among the other
    rows (as in Krum). m = ``selected``, by default n − f (ByzFL's fixed choice; Blanchard et al.
    leave m free). Ties in the score go to the lowest index. Weights are honoured among the
    selected rows (plain mean without weights).

    Args:
        num_byzantine: f, the number of Byzantine inputs tolerated; needs n >= 2f + 3.
        selected: m >= 1, or None for n − f; needs n >= m.
        neighbours: "paper" (default, n − f − 2), "byzfl" (n − f − 1, ByzFL's MultiKrum, which
            only requires n >= 2f + 1) or a fixed int k; see Krum.

    Guarantee: with m = 1 this is Krum ((α, f)-Byzantine resilient for 2f + 2 < n). For m > 1
        Blanchard et al. give no separate bound (they evaluate m-Krum empirically): at most
        min(f, m) Byzantine rows can be averaged in, each with relative weight w_i / Σ_S w.

    References: Blanchard, El Mhamdi, Guerraoui, Stainer, Machine Learning with Adversaries:
        Byzantine Tolerant Gradient Descent, NeurIPS 2017. ByzFL (LPD-EPFL/byzfl) MultiKrum
        (n − f − 1 neighbours, m = n − f).
    """

    name: ClassVar[str] = "multi_krum"

    def __init__(
        self, num_byzantine: int = 0, selected: int | None = None, *, neighbours: int | str = "paper"
    ) -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"MultiKrum(num_byzantine={num_byzantine!r}): must be an int >= 0")
        if selected is not None and (not isinstance(selected, int) or isinstance(selected, bool) or selected < 1):
            raise ConfigurationError(f"MultiKrum(selected={selected!r}): must be None (n − f) or an int >= 1")
        check_neighbours("MultiKrum", neighbours)
        self.num_byzantine = num_byzantine
        self.selected = selected
        self.neighbours = neighbours
        self.min_inputs = max(krum_min_inputs(num_byzantine, neighbours), selected or 0)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, weights = check_inputs(self.name, self.min_inputs, vectors, weights)
        n = vectors.shape[0]
        k = neighbour_count(self.neighbours, n, self.num_byzantine)
        m = self.selected if self.selected is not None else n - self.num_byzantine
        scores = krum_scores(squared_distances(vectors), k)
        chosen = np.argsort(scores, kind="stable")[:m]
        mix = np.zeros(n)
        mix[chosen] = 1.0 if weights is None else weights[chosen]
        return (mix @ vectors) / mix.sum()  # one pass over the rows, no [m, d] copy

    def __repr__(self) -> str:
        return (
            f"MultiKrum(num_byzantine={self.num_byzantine}, selected={self.selected}, "
            f"neighbours={self.neighbours!r})"
        )
