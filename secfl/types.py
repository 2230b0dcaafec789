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

from secfl.exceptions import ConfigurationError, IncompatibleStagesError

__all__ = [
    "Update",
    "Bounds",
    "DropoutSchedule",
    "NO_DROPOUTS",
    "ServerView",
    "RoundResult",
    "Stage",
    "SecureSum",
    "BaseSecureSum",
    "INPUT_KINDS",
    "PreAggregator",
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

    Capabilities (declared, never probed; ``secfl.stages.BaseStage`` gives every default):
        output: ``"real"`` (float32; default) or ``"ring"`` (Z_2^b in uint32/uint64 words).
        uniform_weights: True if every client must weigh 1 (e.g. a stage that sends the weight as one
            bit); the pipeline then gives every client the relative weight 1. Default False.
        placement: where the stage's DP noise is added: ``"client"`` (each client, in full),
            ``"distributed"`` (split over the clients of a group), ``"central"`` (by the server,
            at decode), or None (no noise; default).
        trust: distributed noise only: ``"secure_sum"`` (its shares protect a client only inside a
            secure sum: the pipeline refuses it over a protocol that is not ``secure``) or
            ``"simulation"`` (run in the clear knowingly). None for a stage without noise (default).
        packed: a ring stage packing several fields per word, relying on word sums mod the word size
            (only a protocol with ``accepts_packed`` carries it). Default False.
        bits: a ring stage's ring Z_2^bits once bound (a non-packed stage's group sums fit it): what
            the pipeline binds the protocol to. Read for ring stages only; default None.
        check_pipeline(stages, aggregator, grouping): raise IncompatibleStagesError if the stage
            cannot work with the rest of the pipeline (e.g. a stage whose decode only one aggregator
            understands); a no-op by default.
    """

    name: ClassVar[str]
    output: ClassVar[str]
    uniform_weights: bool
    placement: str | None
    trust: str | None
    packed: bool
    bits: int | None

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update: ...
    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray: ...
    def for_group(self, size: int) -> Stage: ...  # the stage for a client in a group of `size` this round
    def dp_event(self, contributors: int | None = None, shares: int | None = None): ...  # one group sum's event
    def value_bound(self, bound_in: Bounds) -> Bounds: ...
    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> Stage: ...
    def measurements(self) -> dict[str, float]: ...
    def check_pipeline(self, stages: Sequence[Stage], aggregator: Aggregator,
                       grouping: Grouping | None = None) -> None: ...


INPUT_KINDS = ("ring", "real", "any")


@runtime_checkable
class SecureSum(Protocol):
    """A secure-sum protocol: one sum per group over the survivors, never an individual input.

    Capabilities (declared, never probed; ``BaseSecureSum`` gives every default):
        input_kind: what it sums: ``"ring"`` (words of a ring stage), ``"real"`` (float32 values) or
            ``"any"`` (default).
        min_group_size: the smallest group it may sum (default 1).
        secure: True if the server learns only group sums, never an upload. Default False (the
            conservative answer: distributed noise over it needs ``trust="simulation"``).
        accepts_packed: True if ring words are summed mod the word size, so a ``packed`` stage's
            fields add up (default); False if each sum must fit the ring stage's ``bits`` (HE).
        binds_model: True if ``run`` takes ``contexts=`` (each client's model binding,
            ``secfl.protocols.binding``) and never completes a group whose members' contexts differ.
            Default False (``run`` is called without it).
        bind(bits=...): the protocol configured for the stages' output (``bits``: the ring stage's
            width, None for real values), a NEW object whenever anything changes: ``self`` is never
            modified. Default: ``self``.
        check_group_size(size): raise ConfigurationError if groups of ``size`` clients cannot be
            summed (parameters derived and overrides checked for that size); by default only
            ``min_group_size`` is checked.
    """

    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]
    input_kind: str
    min_group_size: int
    secure: bool
    accepts_packed: bool
    binds_model: bool

    def run(
        self,
        updates: Sequence[Update],
        *,
        groups: Sequence[Sequence[int]],
        dropouts: DropoutSchedule = NO_DROPOUTS,
    ) -> RoundResult: ...
    def bind(self, *, bits: int | None = None) -> SecureSum: ...
    def check_group_size(self, size: int) -> None: ...


class BaseSecureSum:
    """Defaults of every ``SecureSum`` capability: a protocol overrides only what differs."""

    input_kind: ClassVar[str] = "any"
    min_group_size: ClassVar[int] = 1
    secure: ClassVar[bool] = False
    accepts_packed: ClassVar[bool] = True
    binds_model: ClassVar[bool] = False

    def bind(self, *, bits: int | None = None) -> BaseSecureSum:
        """The protocol for the stages' output (``bits``: the ring's width, or None): unchanged by default."""
        return self

    def check_group_size(self, size: int) -> None:
        """Raise IncompatibleStagesError if ``size`` is below ``min_group_size``."""
        if size < self.min_group_size:
            raise IncompatibleStagesError(f"{self!r} needs groups of >= {self.min_group_size} clients, got {size}")


@runtime_checkable
class PreAggregator(Protocol):
    """A transform of the inputs [n, d] -> [n, d] before a rule (clipping, nearest-neighbour mixing)."""

    name: ClassVar[str]
    min_inputs: int
    pre: ClassVar[bool]  # True: marks a pre-aggregator (it returns rows, not one vector)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray: ...


@runtime_checkable
class Aggregator(Protocol):
    """A rule over vectors [n, d] -> [d]; hyper-parameters in __init__, data in __call__.

    Capabilities (declared, never probed; ``secfl.aggregators.BaseAggregator`` gives every default):
        min_inputs: the fewest rows it accepts (default 1).
        takes_ids: True if the call takes ``ids=`` (one client id, or a tuple of a group's ids, per
            row) to key per-client state. Default False.
        needs_reference: True if the call needs ``reference=`` (the server's own update of the round,
            e.g. FLTrust's g0; the pipeline forwards ``run_round(reference=...)``). Default False.
        needs_stage: the ``name`` of the client stage whose encoding the rows must carry (its
            partner stage checks this), or None for plain group means (default).
        check_pipeline(stages, grouping): raise IncompatibleStagesError if the rule cannot work with
            these stages or this grouping (None: check the stages only); a no-op by default.
    """

    name: ClassVar[str]
    min_inputs: int
    takes_ids: bool
    needs_reference: bool
    needs_stage: str | None

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None) -> np.ndarray: ...
    def check_pipeline(self, stages: Sequence[Stage], grouping: Grouping | None = None) -> None: ...


@runtime_checkable
class Grouping(Protocol):
    """How a round's clients are split into secure-sum groups."""

    name: ClassVar[str]

    def num_groups(self, num_clients: int) -> int: ...
    def max_group_size(self, num_clients: int) -> int: ...
    def min_group_size(self, num_clients: int) -> int: ...
    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]: ...
