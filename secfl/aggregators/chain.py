"""Pre-aggregators in front of a rule: ``StaticClip -> NearestNeighborMixing -> TrimmedMean``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator
from secfl.exceptions import ConfigurationError
from secfl.types import Aggregator, PreAggregator

if TYPE_CHECKING:
    from secfl.types import Grouping, Stage


def is_pre(component: object) -> bool:
    """True for a pre-aggregator ([n, d] -> [n, d]), False for a rule ([n, d] -> [d])."""
    return isinstance(component, PreAggregator) and bool(component.pre)


class Chain(BaseAggregator):
    """Apply the pre-aggregators in order, then the rule; weights pass through unchanged.

    Args:
        rule: the aggregation rule.
        pre: pre-aggregators applied first, in order (e.g. ``[StaticClip(2.0), NearestNeighborMixing(1)]``).

    Guarantee: whatever the rule guarantees on the transformed inputs; min_inputs is the largest
    requirement of the chain. Inputs are never modified (every component copies). The rule's other
    capabilities (``takes_ids``, ``needs_reference``, ``needs_stage``, ``check_pipeline``) are the
    chain's, and keyword arguments of a call (``ids=``, ``reference=``) go to the rule.

    References: Allouah et al., Fixing by Mixing, AISTATS 2023 (NNM in front of a rule); ByzFL's
        RobustAggregator (pre-aggregators then a rule).
    """

    name: ClassVar[str] = "chain"

    def __init__(self, rule: Aggregator, pre: Sequence[PreAggregator] = ()) -> None:
        if is_pre(rule) or not isinstance(rule, Aggregator):
            raise ConfigurationError(f"{rule!r} is not an aggregation rule; pre-aggregators go in pre=[...]")
        for component in pre:
            if not is_pre(component):
                raise ConfigurationError(f"{component!r} in pre=[...] is not a pre-aggregator")
        self.rule, self.pre = rule, tuple(pre)
        self.min_inputs = max([rule.min_inputs, *(p.min_inputs for p in self.pre)])

    @property
    def takes_ids(self) -> bool:
        return self.rule.takes_ids

    @property
    def needs_reference(self) -> bool:
        return self.rule.needs_reference

    @property
    def reference_size(self) -> int:
        return self.rule.reference_size

    @property
    def needs_stage(self) -> str | None:
        return self.rule.needs_stage

    def check_pipeline(self, stages: Sequence[Stage], grouping: Grouping | None = None) -> None:
        self.rule.check_pipeline(stages, grouping)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None, **kwargs: Any) -> np.ndarray:
        for component in self.pre:
            vectors = component(vectors, weights=weights)
        return self.rule(vectors, weights=weights, **kwargs)

    def __repr__(self) -> str:
        return " -> ".join(repr(c) for c in (*self.pre, self.rule))
