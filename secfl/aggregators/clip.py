"""Norm-clipping pre-aggregators: a static threshold, or an adaptive one (ARC)."""

from __future__ import annotations

import math
import numbers
from typing import ClassVar

import numpy as np

from secfl.aggregators.base import check_inputs
from secfl.exceptions import ConfigurationError


def _row_norms(vectors: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors))


def _clip_rows(vectors: np.ndarray, norms: np.ndarray, threshold: float) -> np.ndarray:
    """A new [n, d] array: row i scaled by min(1, threshold / ||x_i||) (rows with norm <= threshold kept)."""
    scale = np.ones_like(norms)
    over = norms > threshold
    scale[over] = threshold / norms[over]
    return vectors * scale[:, None]


class StaticClip:
    """x_i <- x_i min(1, c / ||x_i||_2) for every row; same row order, shape [n, d].

    A pre-aggregator: it returns rows for a rule to aggregate. Equals ByzFL's ``Clipping(c)``,
    except that the caller's array is never modified (ByzFL clips in place).

    weights: not used (each row is clipped on its own); validated if given.

    Args:
        norm: c > 0, the largest L2 norm a row keeps.

    Guarantee: every output row has ||x_i|| <= c, so any one row moves a weighted mean by at most
        c w_i / sum_j w_j; it bounds L2 sensitivity but does not stop attacks within the bound.

    References: Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan, Adaptive Gradient Clipping for
        Robust Federated Learning, ICLR 2025, arXiv:2405.14432 (static clipping is its baseline);
        ByzFL ``Clipping``.
    """

    name: ClassVar[str] = "static_clip"
    pre: ClassVar[bool] = True
    min_inputs: int = 1

    def __init__(self, norm: float) -> None:
        if not isinstance(norm, numbers.Real) or isinstance(norm, bool) or not math.isfinite(norm) or norm <= 0:
            raise ConfigurationError(f"StaticClip(norm={norm!r}): must be a finite number > 0")
        self.norm = float(norm)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        return _clip_rows(vectors, _row_norms(vectors), self.norm)

    def __repr__(self) -> str:
        return f"StaticClip(norm={self.norm!r})"


class AdaptiveClip:
    """Adaptive Robust Clipping (ARC): clip the k largest rows to the (k+1)-th largest norm.

    k = floor(2 (f / n) (n - f)); with t the (k+1)-th largest of the norms ||x_1||, ..., ||x_n||,
    x_i <- x_i min(1, t / ||x_i||). At most k rows have a norm above t, so exactly the k largest
    rows are clipped (rows at norm t are unchanged, whatever the tie order). Same row order,
    shape [n, d]. k is computed in floating point as ``int((2 * f / n) * (n - f))``, exactly like
    ByzFL's ``ARC(f)``: this can be one below the exact floor (e.g. n=242, f=33 gives 56, not
    57), and it makes the output equal ByzFL's, except that the caller's array is never modified
    (ByzFL clips in place).

    weights: not used (norm ranks are unweighted); validated if given.

    Args:
        num_byzantine: f, the number of Byzantine rows tolerated.

    min_inputs = f + 1: at least one row is not Byzantine, and k <= n/2 < n leaves a (k+1)-th
        norm to clip to. The paper's guarantee needs n > 2f, which the rule that follows
        (e.g. TrimmedMean(f), needing 2f + 1 rows) enforces.

    Guarantee: no threshold to tune; composed with a (f, kappa)-robust rule it keeps that rule
        robust, and for f < n/2 it improves the breakdown point under heterogeneity (Allouah et
        al.); every output norm is at most the (k+1)-th largest input norm, which an honest row
        bounds when k >= f.

    References: Allouah, Guerraoui, Gupta, Jellouli, Rizk, Stephan, Adaptive Gradient Clipping for
        Robust Federated Learning, ICLR 2025, arXiv:2405.14432 (defines ARC; earlier versions are
        titled "The Vital Role of Gradient Clipping in Byzantine-Resilient Distributed Learning");
        Allouah, Guerraoui, Gupta, Pinot, Rizk, Robust Distributed Learning: Tight Error Bounds and
        Breakdown Point under Data Heterogeneity, NeurIPS 2023 (the (G, B) error bounds and
        breakdown point that ARC's analysis builds on).
    """

    name: ClassVar[str] = "adaptive_clip"
    pre: ClassVar[bool] = True

    def __init__(self, num_byzantine: int = 0) -> None:
        if not isinstance(num_byzantine, int) or isinstance(num_byzantine, bool) or num_byzantine < 0:
            raise ConfigurationError(f"AdaptiveClip(num_byzantine={num_byzantine!r}): must be an int >= 0")
        self.num_byzantine = num_byzantine
        self.min_inputs = num_byzantine + 1

    def num_clipped(self, n: int) -> int:
        """k for n rows: ``int((2 * f / n) * (n - f))``, ByzFL's expression."""
        f = self.num_byzantine
        return int((2 * f / n) * (n - f))

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        n = vectors.shape[0]
        k = self.num_clipped(n)
        if k == 0:
            return vectors.copy()
        norms = _row_norms(vectors)
        threshold = float(np.partition(norms, n - k - 1)[n - k - 1])
        return _clip_rows(vectors, norms, threshold)

    def __repr__(self) -> str:
        return f"AdaptiveClip(num_byzantine={self.num_byzantine})"
