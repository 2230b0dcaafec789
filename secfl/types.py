"""Core value types that flow through a round: updates, bounds, dropouts, the server's view, results.

All are frozen dataclasses; arrays are numpy (float32 for real values, uint32/uint64 words for ring elements).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from secfl.exceptions import ConfigurationError

__all__ = [
    "Update",
    "Bounds",
    "DropoutSchedule",
    "NO_DROPOUTS",
    "ServerView",
    "RoundResult",
    "Stage",
    "SecureSum",
    "Aggregator",
    "Grouping",
]


@dataclass(frozen=True)
class Update:
    """One client's contribution, flattened.

    Args:
        client_id: the client's public id (non-negative int).
        values: shape [d]; float32 for real values, uint32/uint64 words for ring elements.
        weight: the FedAvg weight (n_k). Public: the server learns it.
    """

    client_id: int
    values: np.ndarray
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.client_id, (int, np.integer)) or self.client_id < 0:
            raise ConfigurationError(f"Update.client_id must be a non-negative int, got {self.client_id!r}")
        if not isinstance(self.values, np.ndarray) or self.values.ndim != 1 or self.values.dtype.kind not in "fu":
            raise ConfigurationError("Update.values must be a 1-D numpy array of floats or unsigned ring words")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise ConfigurationError(f"Update.weight must be finite and > 0, got {self.weight!r}")

    def replace(self, values: np.ndarray) -> Update:
        """The same client and weight with new values."""
        return Update(self.client_id, values, self.weight)


@dataclass(frozen=True)
class Bounds:
    """What is known about every client's vector: |v_i| <= linf for all i, and ||v||_2 <= l2.

    A single number cannot do both jobs: ring sizing needs the per-coordinate bound, DP
    calibration needs the L2 sensitivity. ``inf`` means unknown.
    """

    linf: float = math.inf
    l2: float = math.inf

    UNBOUNDED: ClassVar[Bounds]


Bounds.UNBOUNDED = Bounds()


@dataclass(frozen=True)
class DropoutSchedule:
    """Which clients drop out, and at which protocol stage (simulation of failures).

    ``at`` maps a client id to the name of the protocol stage (e.g. ``"upload"`` for Plaintext) from
    which it goes silent: it sends nothing at that stage or any later one.
    """

    at: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {}
        for client, stage in dict(self.at).items():
            if not isinstance(client, (int, np.integer)) or not isinstance(stage, str):
                raise ConfigurationError(
                    f"DropoutSchedule maps client ids to stage names, got {client!r}: {stage!r}"
                )
            frozen[int(client)] = stage
        object.__setattr__(self, "at", MappingProxyType(frozen))

    def dropped_by(self, stage: str, order: Sequence[str]) -> frozenset[int]:
        """Clients silent at ``stage``: those whose drop stage is ``stage`` or earlier in ``order``."""
        self.check(order)
        position = list(order).index(stage)
        return frozenset(c for c, s in self.at.items() if list(order).index(s) <= position)

    def check(self, order: Sequence[str]) -> None:
        """Raise ConfigurationError if a stage name is not one of ``order``."""
        unknown = sorted(set(self.at.values()) - set(order))
        if unknown:
            raise ConfigurationError(
                f"dropout stage(s) {unknown} unknown to this protocol; its stages are {list(order)}"
            )


NO_DROPOUTS = DropoutSchedule()


@dataclass(frozen=True)
class ServerView:
    """Every byte the server received in a round, per sending client, in arrival order.

    This is exactly what a curious server holds; privacy attacks take it as their input.
    """

    protocol: str
    received: Mapping[int, tuple[bytes, ...]]

    @property
    def total_bytes(self) -> int:
        return sum(len(m) for msgs in self.received.values() for m in msgs)


@dataclass(frozen=True)
class RoundResult:
    """What a secure-sum round produced.

    Attributes:
        sums: [g, d], one sum per group over that group's survivors (float64, or the ring's uint32/uint64 words).
        survivors: per group, the client ids whose input is in the sum.
        view: the server's view (every byte it received).
        measurements: ``"component/metric" -> float`` (bytes_up, bytes_down, dropped, seconds ...).
    """

    sums: np.ndarray
    survivors: tuple[tuple[int, ...], ...]
    view: ServerView
    measurements: Mapping[str, float]


@runtime_checkable
class Stage(Protocol):
    """A client-side transform with its server-side inverse.

    Inside a Pipeline, ring stages (and every ``decode``) see the client's relative weight appended
    as the last coordinate: ``[r x, r]`` on the client, ``[sum r x, sum r]`` on the server. A stage
    that treats coordinates differently (noise, rotation) leaves that last coordinate exact.
    """

    name: ClassVar[str]
    output: ClassVar[str]  # "real" (float32) or "ring" (Z_2^b in uint32/uint64 words)

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update: ...
    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray: ...
    def for_group(self, size: int) -> Stage: ...  # the stage for a client in a group of `size` this round
    def dp_event(self, contributors: int | None = None, shares: int | None = None): ...  # one group sum's event
    def value_bound(self, bound_in: Bounds) -> Bounds: ...
    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> Stage: ...
    def measurements(self) -> dict[str, float]: ...


@runtime_checkable
class SecureSum(Protocol):
    """A secure-sum protocol: one sum per group over the survivors, never an individual input."""

    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]

    def run(
        self,
        updates: Sequence[Update],
        *,
        groups: Sequence[Sequence[int]],
        dropouts: DropoutSchedule = NO_DROPOUTS,
    ) -> RoundResult: ...


@runtime_checkable
class PreAggregator(Protocol):
    """A transform of the inputs [n, d] -> [n, d] before a rule (clipping, nearest-neighbour mixing)."""

    name: ClassVar[str]
    min_inputs: int
    pre: ClassVar[bool]  # True: marks a pre-aggregator (it returns rows, not one vector)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray: ...


@runtime_checkable
class Aggregator(Protocol):
    """A rule over vectors [n, d] -> [d]; hyper-parameters in __init__, data in __call__."""

    name: ClassVar[str]
    min_inputs: int

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray: ...


@runtime_checkable
class Grouping(Protocol):
    """How a round's clients are split into secure-sum groups."""

    name: ClassVar[str]

    def num_groups(self, num_clients: int) -> int: ...
    def max_group_size(self, num_clients: int) -> int: ...
    def min_group_size(self, num_clients: int) -> int: ...
    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]: ...
