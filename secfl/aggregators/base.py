"""Input checks shared by every aggregator."""

from __future__ import annotations

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def check_inputs(
    name: str, min_inputs: int, vectors: np.ndarray, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate ``vectors`` [n, d] (and ``weights`` [n]) for a rule needing ``min_inputs`` rows.

    Returns float64 views/copies; the caller's arrays are never modified.

    Raises:
        IncompatibleStagesError: fewer than ``min_inputs`` rows.
        ConfigurationError: wrong shapes, non-finite values, non-positive weights.
    """
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise ConfigurationError(f"{name} expects vectors of shape [n, d], got {vectors.shape}")
    if vectors.shape[0] < min_inputs:
        raise IncompatibleStagesError(
            f"{name} needs >= {min_inputs} inputs but got {vectors.shape[0]}; "
            "use more groups (smaller buckets) or a rule with fewer requirements"
        )
    vectors = vectors.astype(np.float64, copy=False)
    if not np.all(np.isfinite(vectors)):
        raise ConfigurationError(f"{name} got non-finite values")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (vectors.shape[0],) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ConfigurationError(f"{name} weights must be {vectors.shape[0]} finite numbers > 0")
    return vectors, weights
