"""Squared pairwise Euclidean distances from one Gram matrix, shared by the distance-based rules.

Krum, MultiKrum, Bulyan and NearestNeighborMixing all start from the same [n, n] matrix. It is
computed once per call from ``G = X Xᵀ`` (O(n² d) flops, a single BLAS ``syrk``) instead of
gathering differences (O(n² d) memory traffic, or an [n, n, d] tensor).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components

from secfl.exceptions import ConfigurationError

__all__ = ["CANCELLATION_RTOL", "squared_distances"]

CANCELLATION_RTOL = 1e-6
"""A pair is recomputed exactly when its Gram distance is <= this fraction of ||x_i||² + ||x_j||²."""

_CHUNK = 1 << 14  # columns per block of the exact fallback (keeps the block in cache)


def squared_distances(x: np.ndarray, *, rtol: float = CANCELLATION_RTOL) -> np.ndarray:
    """D[i, j] = ||x_i − x_j||² for the rows of ``x`` [n, d]; returns [n, n] float64.

    D_ij = G_ii + G_jj − 2 G_ij with G = x xᵀ accumulated in float64, clamped at 0, symmetric,
    with an exactly zero diagonal. The Gram formula cancels when x_i and x_j are close relative
    to their norms; every pair with D_ij <= ``rtol`` · (G_ii + G_jj) is therefore recomputed from
    the differences x_i − x_j (no cancellation), so identical rows are at distance exactly 0 and
    near-identical rows keep full relative precision. Pairs not recomputed have a relative error of about
    eps · sqrt(d) / rtol (≈ 1e-7 at d = 1e6). The fallback costs nothing for generic data and
    one pass over the rows of each cluster of near-identical rows otherwise (see _recompute).

    ``x`` is never modified (float32 input is converted to a float64 copy).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ConfigurationError(f"squared_distances expects an array of shape [n, d], got {x.shape}")
    if not rtol >= 0:
        raise ConfigurationError(f"squared_distances(rtol={rtol!r}): must be >= 0")
    x = x.astype(np.float64, copy=False)
    gram = x @ x.T  # numpy dispatches x @ x.T to syrk: half the flops of a general product
    sq = np.diag(gram).copy()
    scale = sq[:, None] + sq[None, :]
    upper = np.triu(scale - 2.0 * gram, k=1)  # only i < j, then mirrored: exactly symmetric
    np.maximum(upper, 0.0, out=upper)
    flagged = np.triu(upper <= rtol * scale, k=1)
    if flagged.any():
        _recompute(x, flagged, upper, rtol)
    return upper + upper.T


def _recompute(x: np.ndarray, flagged: np.ndarray, out: np.ndarray, rtol: float) -> None:
    """Overwrite the flagged entries (i < j) of ``out`` with values free of the Gram cancellation.

    Flagged pairs are grouped into connected clusters. In each cluster the rows are re-centred on
    its first row a, y_i = x_i − x_a, and the cluster's Gram of differences is accumulated in
    cache-sized blocks: one pass over the cluster's rows instead of one per pair (for a Mimic
    attack, f copies of one row, that is one pass over f + 1 rows). D_aj = ||y_j||² is computed from
    differences directly; D_ij from the centred Gram is kept unless it cancels again relative to
    ||y_i||² + ||y_j||² (two rows much closer to each other than to a), in which case that pair is
    summed directly, Σ_k (x_ik − x_jk)².
    """
    _, labels = connected_components(flagged, directed=False)
    for label in np.unique(labels[np.flatnonzero(flagged.any(axis=0) | flagged.any(axis=1))]):
        members = np.flatnonzero(labels == label)  # ascending, so flagged[members][:, members] is upper
        gram = np.zeros((members.size, members.size))
        for start in range(0, x.shape[1], _CHUNK):
            block = x[members, start : start + _CHUNK]  # a copy: subtracting in place is safe
            block -= x[members[0], start : start + _CHUNK]
            gram += block @ block.T
        sq = np.diag(gram).copy()
        scale = sq[:, None] + sq[None, :]
        local = np.maximum(scale - 2.0 * gram, 0.0)
        wanted = flagged[np.ix_(members, members)]
        again = wanted & (local <= rtol * scale) & (scale > 0)
        rows, cols = np.nonzero(wanted & ~again)
        out[members[rows], members[cols]] = local[rows, cols]
        rows, cols = np.nonzero(again)
        if rows.size:
            _exact_pairs(x, members[rows], members[cols], out)


def _exact_pairs(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, out: np.ndarray) -> None:
    """out[i, j] = Σ_k (x_ik − x_jk)² for every (i, j) in zip(rows, cols), in cache-sized blocks."""
    d = x.shape[1]
    for i in np.unique(rows):
        partners = cols[rows == i]
        acc = np.zeros(partners.size)
        for start in range(0, d, _CHUNK):
            block = x[partners, start : start + _CHUNK] - x[i, start : start + _CHUNK]
            acc += np.einsum("ij,ij->i", block, block)
        out[i, partners] = acc
