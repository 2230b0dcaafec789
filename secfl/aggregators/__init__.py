"""Aggregation rules over group means: one class per rule, ``rule(vectors, weights=...) -> [d]``."""

from secfl.aggregators.mean import Mean
from secfl.aggregators.median import Median

__all__ = ["Mean", "Median"]
