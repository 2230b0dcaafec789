"""Mimic: every Byzantine client copies one honest client's vector."""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, tile
from secfl.exceptions import ConfigurationError


def top_direction_index(honest: np.ndarray) -> int:
    """argmax_i |<g_i - mean, v>| with v the top principal direction of the honest vectors (ties: lowest i).

    Computed from the n_h x n_h Gram matrix of the centred rows: its top eigenvector u gives the
    projections sigma_1 * u_i, so no d x d covariance is formed. Index 0 when all rows are equal.
    """
    centred = honest - honest.mean(axis=0)
    gram = centred @ centred.T
    if not np.any(gram):
        return 0
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues: the last column is the top direction
    scores = np.abs(vectors[:, -1])
    return int(np.flatnonzero(scores >= scores.max() * (1 - 1e-12))[0])


class Mimic(UpdateAttack):
    """All f Byzantine clients send g_t, a copy of one honest vector.

    Under heterogeneous (non-IID) data this over-weights one client's distribution without ever leaving
    the honest cloud, so no outlier filter can flag it.

    Args:
        target: "top_direction" (default): t = argmax_i |<g_i - mean, v>|, v the top principal direction
            of this round's honest vectors, i.e. the client that contributes most to the largest variance
            (the paper's choice rule). An int: that honest row (0 = ByzFL's ``Mimic(epsilon=0)`` and
            FLPoison's ``choice=0``); it must be < n_h at call time.

    Guarantee: every Byzantine row equals one honest row exactly (so it passes any filter that keeps that
        honest row).

    Where definitions differ: Karimireddy et al. estimate v online over a warm-up phase of rounds and then
        keep copying the same client; this class is stateless and applies the rule to each round's vectors
        (the chosen client can change between rounds). Use a fixed int to copy the same position every
        round. ByzFL and FLPoison copy a fixed index.

    References: Karimireddy, He, Jaggi, Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing,
        ICLR 2022.
    """

    name: ClassVar[str] = "mimic"

    def __init__(self, target: Any = "top_direction") -> None:
        ok = target == "top_direction" if isinstance(target, str) else (
            isinstance(target, Integral) and not isinstance(target, bool) and target >= 0)
        if not ok:
            raise ConfigurationError(f"Mimic(target={target!r}): must be 'top_direction' or an int >= 0")
        self.target = target if isinstance(target, str) else int(target)

    def choose(self, honest: np.ndarray) -> int:
        """The index of the honest row that is copied."""
        if isinstance(self.target, str):
            return top_direction_index(honest)
        if self.target >= honest.shape[0]:
            raise ConfigurationError(f"Mimic(target={self.target}): only {honest.shape[0]} honest vectors this round")
        return self.target

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        return tile(honest[self.choose(honest)], f)
