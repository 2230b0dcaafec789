"""Weighted mean (FedAvg)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs


class Mean(BaseAggregator):
    """sum_i w_i x_i / sum_i w_i (plain mean without weights).

    Guarantee: none against Byzantine inputs (one input moves the result arbitrarily far); it is
    the only rule that a single full secure sum supports exactly.

    References: McMahan et al., Communication-Efficient Learning of Deep Networks from
        Decentralized Data, AISTATS 2017.
    """

    name: ClassVar[str] = "mean"
    min_inputs: int = 1

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray:
        vectors, weights = check_inputs(self.name, self.min_inputs, vectors, weights)
        if weights is None:
            return vectors.mean(axis=0)
        return (weights @ vectors) / weights.sum()

    def __repr__(self) -> str:
        return "Mean()"
