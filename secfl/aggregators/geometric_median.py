"""Geometric median by smoothed Weiszfeld iterations (RFA)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError

_CHUNK_BYTES = 1 << 26  # columns per chunk of the explicit centring pass: about 64 MB of rows at a time
_OFFSET_RATIO = 1e4  # max ||x_i||^2 / max ||x_i - z_0||^2 above which the Gram is centred explicitly


def _positive_real(owner: str, key: str, value: object) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{owner}({key}={value!r}): must be a finite number > 0")
    return float(value)


def _centered_gram(vectors: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(X - 1 z^T)(X - 1 z^T)^T [n, n] for z = coef^T X (sum coef = 1), no n x n x d temporary.

    Fast path: one Gram product X X^T, centred algebraically. That cancels about
    eps * max ||x_i||^2; when the rows share an offset large enough for this to matter
    (max ||x_i||^2 > _OFFSET_RATIO * max ||x_i - z||^2) the rows are centred explicitly, in column
    chunks, and the Gram recomputed.
    """
    gram = vectors @ vectors.T
    g_coef = gram @ coef
    centred = gram - g_coef[:, None] - g_coef[None, :] + coef @ g_coef
    if np.max(np.diag(gram)) <= _OFFSET_RATIO * np.max(np.diag(centred)):
        return centred
    n, d = vectors.shape
    centre = coef @ vectors
    step = max(1, _CHUNK_BYTES // (8 * n))
    centred = np.zeros((n, n))
    for start in range(0, d, step):
        block = vectors[:, start : start + step] - centre[start : start + step]
        centred += block @ block.T
    return centred


class GeometricMedian(BaseAggregator):
    """argmin_z sum_i w_i max(||x_i - z||_2, nu), by smoothed Weiszfeld iterations.

    From z_0 = sum_i w_i x_i / sum_i w_i (the weighted mean), repeat
        beta_i = max(||x_i - z||, nu),   z <- sum_i (w_i / beta_i) x_i / sum_i (w_i / beta_i)
    until the objective F(z) = sum_i w_i max(||x_i - z||, nu) changes by less than
    ``tolerance * F(z)`` between two iterates, or ``max_iterations`` updates were made. If the
    iterations run out first, the last iterate is returned as is (no error, no warning).

    weights: honoured (integer weights equal duplicating rows).

    Every iterate is a convex combination z = a^T X of the rows, so the iterations run on the
    coefficients a in R^n: ||x_i - z||^2 = G_ii - 2 (G a)_i + a^T G a, with G the Gram matrix of
    the rows centred at z_0 (one Gram product X X^T, O(n^2 d)). Each iteration then costs one
    n x n matrix-vector product, and the result one [n] x [n, d] product. Centring keeps the
    cancellation error of the expansion at the scale of the spread of the rows, not of their
    norm: when the rows share an offset over 100x their spread, they are centred explicitly
    (one more pass over X) before the Gram product. Squared distances are clamped at 0.

    Args:
        smoothing: nu > 0, the distance below which a row's weight stops growing (RFA's nu).
        tolerance: relative change of F that stops the iterations (> 0). Near a smooth optimum the
            iterate's error is of order sqrt(tolerance) times the spread of the rows.
        max_iterations: most Weiszfeld updates (int >= 1).

    Guarantee: breakdown point 1/2: with f < n/2 Byzantine rows (unweighted), ||z - y|| <=
        2 (n - f) / (n - 2f) * max_{i honest} ||x_i - y|| for any y (up to O(nu) and the stopping
        tolerance), whatever the Byzantine rows are.

    References: Pillutla, Kakade, Harchaoui, Robust Aggregation for Federated Learning, IEEE
        Transactions on Signal Processing 70, 2022 (RFA); Weiszfeld, Tohoku Math. J. 43, 1937.
    """

    name: ClassVar[str] = "geometric_median"
    min_inputs: int = 1

    def __init__(self, smoothing: float = 1e-6, tolerance: float = 1e-12, max_iterations: int = 1000) -> None:
        self.smoothing = _positive_real("GeometricMedian", "smoothing", smoothing)
        self.tolerance = _positive_real("GeometricMedian", "tolerance", tolerance)
        if not isinstance(max_iterations, int) or isinstance(max_iterations, bool) or max_iterations < 1:
            raise ConfigurationError(f"GeometricMedian(max_iterations={max_iterations!r}): must be an int >= 1")
        self.max_iterations = max_iterations

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, weights = check_inputs(self.name, self.min_inputs, vectors, weights)
        n = vectors.shape[0]
        w = np.ones(n) if weights is None else weights
        coef = w / w.sum()
        gram = _centered_gram(vectors, coef)
        diag = np.diag(gram)
        previous = math.inf
        for iteration in range(self.max_iterations + 1):
            g_coef = gram @ coef
            sq = np.maximum(diag - 2.0 * g_coef + coef @ g_coef, 0.0)
            beta = np.maximum(np.sqrt(sq), self.smoothing)
            objective = float(w @ beta)
            if abs(previous - objective) <= self.tolerance * objective or iteration == self.max_iterations:
                break
            previous = objective
            inverse = w / beta
            coef = inverse / inverse.sum()
        return coef @ vectors

    def __repr__(self) -> str:
        return (
            f"GeometricMedian(smoothing={self.smoothing!r}, tolerance={self.tolerance!r}, "
            f"max_iterations={self.max_iterations})"
        )
