"""How a FedAgg parent combines its children's logits on a common bridge set: the ensemble mean, or a robust
rule over bucket means (coordinate-wise median, trimmed mean, agreement weighting)."""

from __future__ import annotations

import numpy as np

__all__ = ["RULES", "combine"]

RULES = ("mean", "median", "trimmed_mean", "agreement")


def combine(vectors: np.ndarray, weights: np.ndarray, *, rule: str, trim: int = 1, classes: int) -> np.ndarray:
    """Combine ``vectors`` ``[g, m * classes]`` (children's or buckets' mean logits) into one ``[m * classes]``.

    - ``mean``: weighted by ``weights`` (each bucket by the children it holds): the plain ensemble.
    - ``median``: coordinate-wise median (unweighted).
    - ``trimmed_mean``: per coordinate, ``trim`` values dropped on each side (the median if too few remain).
    - ``agreement``: each input weighted by the fraction of bridge samples on which its top class agrees with
      the coordinate-wise median's; inputs that never agree get no weight (the median if none agrees).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    g = len(vectors)
    if rule == "mean" or g == 1:
        return np.average(vectors, axis=0, weights=np.asarray(weights, dtype=np.float64))
    median = np.median(vectors, axis=0)
    if rule == "median":
        return median
    if rule == "trimmed_mean":
        if g - 2 * trim < 1:
            return median
        return np.sort(vectors, axis=0)[trim:g - trim].mean(axis=0)
    top = vectors.reshape(g, -1, classes).argmax(axis=2)
    agree = (top == median.reshape(-1, classes).argmax(axis=1)).mean(axis=1)
    return np.average(vectors, axis=0, weights=agree) if agree.sum() > 0 else median
