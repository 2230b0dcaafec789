"""Centered clipping (stateless)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError

_STARTS = ("median", "zero")
_CHUNK_BYTES = 1 << 21  # about 2 MB of rows per chunk of the weighted median


def _coordinate_median(vectors: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Coordinate-wise (weighted) median; the mean of the two middle values on an even split.

    With weights: per coordinate, sort the values, accumulate their weights C_1 <= ... <= C_n = W and
    average the first value with C_k >= W/2 and the first with C_k > W/2. For integer weights this
    is ``np.median`` of the rows repeated w_i times.
    """
    n, d = vectors.shape
    if weights is None:
        ordered = np.sort(vectors, axis=0)  # faster than np.median (a two-pivot partition) at large d
        return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2.0
    out = np.empty(d)
    step = max(1, _CHUNK_BYTES // (8 * n))
    for start in range(0, d, step):  # column chunks, each transposed to [c, n]: 4x faster than whole
        block = vectors[:, start : start + step].T
        order = np.argsort(block, axis=1)
        ordered = np.take_along_axis(block, order, axis=1)
        cumulative = np.cumsum(weights[order], axis=1)
        half = cumulative[:, -1:] / 2.0
        low = np.count_nonzero(cumulative < half, axis=1)[:, None]
        high = np.count_nonzero(cumulative <= half, axis=1)[:, None]
        out[start : start + step] = (
            (np.take_along_axis(ordered, low, axis=1) + np.take_along_axis(ordered, high, axis=1)) / 2.0
        )[:, 0]
    return out


class CenteredClip(BaseAggregator):
    """v_{t+1} = v_t + sum_i w_i (x_i - v_t) min(1, tau / ||x_i - v_t||) / sum_i w_i, L times.

    Stateless: every call starts afresh from v_0 = the coordinate-wise median of the rows
    (``start="median"``; weighted median when weights are given) or from v_0 = 0
    (``start="zero"``), and returns v_L. The paper's stateful variant starts from the previous
    round's (momentum) output; pass that history in by other means if needed. With
    ``start="zero", iterations=1, radius=100`` and no weights this equals ByzFL's
    ``CenteredClipping()`` on a fresh instance: v = mean_i[x_i min(1, tau/||x_i||)].

    weights: honoured (integer weights equal duplicating rows, the median start included).

    Distances use ||x_i - v||^2 = ||x_i||^2 - 2 x_i.v + ||v||^2 (one matrix-vector product per
    iteration, clamped at 0); a row at distance 0 gets factor 1.

    Args:
        radius: tau > 0, the clipping radius around the current centre.
        iterations: L >= 1, the number of clipping steps.
        start: "median" or "zero", the starting point v_0.

    Guarantee: each step moves v by at most tau * (Byzantine weight) / (total weight) because of
        the Byzantine rows, so L steps move it by at most L tau f / n (unweighted) away from where
        the honest rows alone would take it. With momentum across rounds and a tuned tau,
        Karimireddy et al. prove convergence for a small enough fraction of Byzantine workers.

    References: Karimireddy, He, Jaggi, Learning from History for Byzantine Robust Optimization,
        ICML 2021.
    """

    name: ClassVar[str] = "centered_clip"
    min_inputs: int = 1

    def __init__(self, radius: float = 10.0, iterations: int = 3, start: str = "median") -> None:
        if not isinstance(radius, numbers.Real) or isinstance(radius, bool) or not math.isfinite(radius) or radius <= 0:
            raise ConfigurationError(f"CenteredClip(radius={radius!r}): must be a finite number > 0")
        if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
            raise ConfigurationError(f"CenteredClip(iterations={iterations!r}): must be an int >= 1")
        if start not in _STARTS:
            raise ConfigurationError(f"CenteredClip(start={start!r}): must be one of {list(_STARTS)}")
        self.radius = float(radius)
        self.iterations = iterations
        self.start = start

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, weights = check_inputs(self.name, self.min_inputs, vectors, weights)
        n, d = vectors.shape
        w = np.ones(n) if weights is None else weights
        total = w.sum()
        sq_norms = np.einsum("ij,ij->i", vectors, vectors)
        centre = _coordinate_median(vectors, weights) if self.start == "median" else np.zeros(d)
        for _ in range(self.iterations):
            sq = np.maximum(sq_norms - 2.0 * (vectors @ centre) + centre @ centre, 0.0)
            dist = np.sqrt(sq)
            factor = np.ones(n)
            far = dist > self.radius
            factor[far] = self.radius / dist[far]
            coef = w * factor
            # v + sum_i c_i (x_i - v) / W  =  v (1 - sum_i c_i / W) + (c^T X) / W
            centre = centre * (1.0 - coef.sum() / total) + (coef @ vectors) / total
        return centre

    def __repr__(self) -> str:
        return f"CenteredClip(radius={self.radius!r}, iterations={self.iterations}, start={self.start!r})"
