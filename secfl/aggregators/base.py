"""What every aggregator shares: the defaults of its declared capabilities, and the input checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError

if TYPE_CHECKING:
    from secfl.types import Grouping, Stage


class BaseAggregator:
    """Defaults of every ``Aggregator`` capability (``secfl.types.Aggregator`` documents each).

    A rule over plain group means: at least one input, no ids, no server reference, no partner stage,
    nothing to check against the pipeline. A rule overrides only what differs.
    """

    name: ClassVar[str]
    min_inputs: int = 1
    takes_ids: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False
    reference_size: int = 0  # with needs_reference: the server's root examples its reference update trains on
    needs_stage: ClassVar[str | None] = None

    def check_pipeline(self, stages: Sequence[Stage], grouping: Grouping | None = None) -> None:
        """Raise IncompatibleStagesError if the rule cannot work with these stages or grouping (no-op)."""


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
