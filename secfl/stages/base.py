"""Defaults shared by client-side stages: identity decode, no DP event, bounds unchanged, and the
default of every capability the ``Stage`` protocol declares (see ``secfl.types.Stage``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import dp_accounting
import numpy as np

from secfl.types import Bounds

if TYPE_CHECKING:
    from secfl.types import Aggregator, Grouping, Stage


class BaseStage:
    """A stage that changes nothing on the server side unless it overrides a method.

    Capabilities (``secfl.types.Stage`` documents each): a real-valued stage, weights as sent, no
    noise, nothing packed, no ring bits, no partner to check. A stage overrides only what differs.
    """

    name: ClassVar[str]
    output: ClassVar[str] = "real"
    uniform_weights: ClassVar[bool] = False
    placement: str | None = None
    trust: str | None = None
    packed: ClassVar[bool] = False
    bits: int | None = None

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        """Invert the stage on a sum of ``count`` encoded vectors (identity by default)."""
        return total

    def for_group(self, size: int) -> BaseStage:
        """The stage as a client of a group of ``size`` uses it this round (unchanged by default)."""
        return self

    def dp_event(self, contributors: int | None = None, shares: int | None = None) -> dp_accounting.DpEvent:
        """The privacy event of one group sum: ``contributors`` of the ``shares`` clients the noise was
        split over delivered (default: all of them). None by default."""
        return dp_accounting.NoOpDpEvent()

    def value_bound(self, bound_in: Bounds) -> Bounds:
        """The bounds of the output given those of the input (unchanged by default)."""
        return bound_in

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> BaseStage:
        """The stage configured for inputs within ``bound_in`` summed in groups of at most ``group_size``
        (and, when a round is full, at least ``min_group_size``)."""
        return self

    def measurements(self) -> dict[str, float]:
        """Static facts about the configured stage, as ``"name/metric" -> value``."""
        return {}

    def check_pipeline(self, stages: Sequence[Stage], aggregator: Aggregator, grouping: Grouping | None = None) -> None:
        """Raise IncompatibleStagesError if this stage cannot work with the other components (no-op by default)."""
