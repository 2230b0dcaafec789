"""Pipeline: client stages -> secure sum per group -> decode -> aggregator, checked at construction.

Read it left to right: each client's update passes through the stages (clip, noise, quantize ...),
is weighted by its public relative weight, goes through the protocol's per-group secure sum, the
server decodes each group's sum into a group mean, and the aggregator combines the group means.

The checks read only the capabilities each component declares (``secfl.types.Stage``, ``SecureSum``,
``Aggregator``); component-specific pairings (e.g. EWWA's stage and rule) are the components' own
``check_pipeline``. Binding (stages to bounds and group sizes, the protocol to the ring) makes new
objects: the components passed in are never modified.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dp_accounting
import numpy as np

from secfl.aggregators import Mean
from secfl.exceptions import ConfigurationError, IncompatibleStagesError, InsufficientParticipantsError
from secfl.grouping import Individual
from secfl.protocols import Plaintext
from secfl.types import (INPUT_KINDS, NO_DROPOUTS, Aggregator, Bounds, DropoutSchedule, Grouping, RoundResult,
                         SecureSum, Stage, Update)


@dataclass(frozen=True)
class RoundOutput:
    """The server's result of one pipeline round.

    Attributes:
        aggregate: [d] float64, the aggregator's output over the group means.
        group_means: [g, d] decoded weighted mean of each group with survivors.
        group_weights: [g] total relative weight of each group's survivors (decoded from the sum).
        result: the protocol's RoundResult (sums, survivors, the server's view).
        measurements: ``"component/metric" -> float`` for the whole round.
        dp_event: the round's privacy event for one client (its group's realized noise; the
            sampling of clients is the ledger's part): what the released models reveal.
    """

    aggregate: np.ndarray
    group_means: np.ndarray
    group_weights: np.ndarray
    result: RoundResult
    measurements: dict[str, float]
    dp_event: dp_accounting.DpEvent


class Pipeline:
    """Stages + protocol + grouping + aggregator for rounds of at most ``clients_per_round`` clients.

    Args:
        clients_per_round: the most clients a round may have (sizes the groups and the ring).
        stages: client-side stages in order; real-valued stages first, ring stages last.
        protocol: the secure sum (default ``Plaintext()``).
        grouping: how clients are split into groups (default ``Individual()``).
        aggregator: the rule over group means (default ``Mean()``).
        weight_cap: a public bound W on client weights: a client's weight travels as min(w, W) / W.
            If None, W is the round's largest weight (then the clients must know that maximum).

    With a DP stage (one whose event is not a no-op) every client weighs 1: a client's weight (e.g.
    its example count) would otherwise scale its sensitivity and leak through the group's total. So
    does a stage with ``uniform_weights = True`` (e.g. one that sends bits).

    Distributed noise (a stage with ``placement = "distributed"``: ``GaussianNoise``,
    ``DistributedDiscreteGaussian``) protects a client against the server only inside a secure sum:
    over a protocol that is not ``secure`` (``Plaintext``) with groups of more than one client the
    pipeline refuses it unless the stage says ``trust="simulation"``.

    The protocol is bound to the stages' output (``protocol.bind(bits=...)``, a new object); the
    bound one is ``self.protocol``, the stages bound to their bounds and group sizes ``self.stages``.

    Raises:
        IncompatibleStagesError: the aggregator needs more inputs than the grouping yields, a
            real-valued stage follows a ring stage, a stage cannot be sized (e.g. too few bits), the
            stages' output is not the protocol's ``input_kind`` (or is ``packed`` and the protocol
            does not accept it), groups are smaller than the protocol's ``min_group_size``, a
            component's ``check_pipeline`` refuses the others, or distributed noise would go through
            a protocol that is not ``secure`` without ``trust="simulation"``.
        ConfigurationError: a component does not have the interface its slot needs.
    """

    def __init__(
        self,
        *,
        clients_per_round: int,
        stages: Sequence[Stage] = (),
        protocol: SecureSum | None = None,
        grouping: Grouping | None = None,
        aggregator: Aggregator | None = None,
        weight_cap: float | None = None,
    ) -> None:
        if not isinstance(clients_per_round, int) or clients_per_round < 1:
            raise ConfigurationError(f"clients_per_round must be an int >= 1, got {clients_per_round!r}")
        self.clients_per_round = clients_per_round
        if weight_cap is not None and not (isinstance(weight_cap, (int, float)) and math.isfinite(weight_cap)
                                           and weight_cap > 0):
            raise ConfigurationError(f"weight_cap={weight_cap!r} must be a finite number > 0")
        self.weight_cap = None if weight_cap is None else float(weight_cap)
        self.protocol = protocol if protocol is not None else Plaintext()
        self.grouping = grouping if grouping is not None else Individual()
        self.aggregator = aggregator if aggregator is not None else Mean()
        for value, kind, slot in ((self.protocol, SecureSum, "protocol"), (self.grouping, Grouping, "grouping"),
                                  (self.aggregator, Aggregator, "aggregator"), *((s, Stage, "stage") for s in stages)):
            if not isinstance(value, kind):
                raise ConfigurationError(f"{value!r} cannot be used as a {slot}: it lacks the {kind.__name__} interface")
        self._check_groups()
        self.stages = self._bind(list(stages))
        for stage in self.stages:  # pairings the components own (e.g. EwwaContribution with Ewwa(mode="secure"))
            stage.check_pipeline(self.stages, self.aggregator, self.grouping)
        self.aggregator.check_pipeline(self.stages, self.grouping)
        self.private = not isinstance(self.dp_event(), dp_accounting.NoOpDpEvent)
        # DP stages and bit-level ring stages (which pack r = 1 as one bit) need every client to weigh 1
        self.uniform = self.private or any(s.uniform_weights for s in self.stages)
        self.protocol = self._bind_protocol(self.protocol)
        self._check_noise_trust()
        self.stages = tuple(self.stages)
        self._checked = True  # from here on the checked components cannot be swapped (see __setattr__)

    def __setattr__(self, name: str, value: object) -> None:
        """A checked pipeline is immutable: a round hook (or anyone) replacing its aggregator, stages or
        protocol would bypass every check above, and the privacy ledger reads its stages live."""
        if self.__dict__.get("_checked", False):
            raise ConfigurationError(f"Pipeline.{name} cannot change after the pipeline was checked; build a new one")
        super().__setattr__(name, value)

    @property
    def secure_sum(self) -> bool:
        """Whether the server sees only group sums (a ``secure`` protocol, or groups of one)."""
        return self.protocol.secure or self.grouping.max_group_size(self.clients_per_round) <= 1

    def _check_noise_trust(self) -> None:
        """Distributed noise over Plaintext is local DP at z / sqrt(m) against the server: only on request."""
        if self.secure_sum:
            return
        for stage in self.stages:
            if (stage.placement == "distributed" and stage.trust == "secure_sum"
                    and not isinstance(stage.dp_event(), dp_accounting.NoOpDpEvent)):
                size = self.grouping.max_group_size(self.clients_per_round)
                raise IncompatibleStagesError(
                    f"{stage!r} splits its noise over the clients of a group (up to {size} here), assuming the "
                    f"server sees only the group's secure sum, but {self.protocol!r} shows the server every upload: "
                    "against it each client would have only its own share (local DP at z / sqrt(m)). Use a secure "
                    "protocol (SecAggPlus / SecAgg, protocol = { kind = \"secagg+\" }), or placement \"client\" or "
                    "\"central\", or say trust = \"simulation\" on the noise stage to run it in the clear knowingly"
                )

    def _check_groups(self) -> None:
        n, need = self.clients_per_round, self.aggregator.min_inputs
        groups, smallest = self.grouping.num_groups(n), max(1, self.protocol.min_group_size)
        if groups < need:
            if n < need * smallest:  # no grouping of n clients works: say what would
                fix = (f"{self.protocol!r} needs groups of >= {smallest} clients, so {need} groups need >= "
                       f"{need * smallest} clients per round (have {n}): sample more clients, or use "
                       "protocol = { kind = \"plaintext\" } with grouping = { kind = \"individual\" }"
                       if smallest > 1 else f"sample at least {need} clients per round")
            else:
                fix = f"use grouping = {{ kind = \"buckets\", size = {n // need} }} (or smaller, >= {smallest})"
            raise IncompatibleStagesError(
                f"{self.aggregator!r} needs >= {need} inputs but {self.grouping!r} over {n} clients yields "
                f"{groups} group(s); {fix}, or use an aggregator that needs fewer inputs (e.g. Mean)"
            )

    def _bind_protocol(self, protocol: SecureSum) -> SecureSum:
        """The protocol bound to the stages' output, after checking it sums that kind of input in
        groups big enough to hide an individual one (a new object if binding changes anything)."""
        ring = bool(self.stages) and self.stages[-1].output == "ring"
        kind = protocol.input_kind
        if kind not in INPUT_KINDS:
            raise ConfigurationError(f"{protocol!r} declares input_kind={kind!r}; it must be one of {INPUT_KINDS}")
        if kind == "ring" and not ring:
            raise IncompatibleStagesError(
                f"{protocol!r} sums ring elements: end the stages with Quantize "
                "(and put L2Clip before it to bound the values), or with BitPack for sign bits"
            )
        if kind == "real" and ring:
            raise IncompatibleStagesError(f"{protocol!r} sums real values: drop the ring stage (Quantize)")
        if ring and self.stages[-1].packed and not protocol.accepts_packed:
            raise IncompatibleStagesError(
                f"{self.stages[-1]!r} packs several fields per word and relies on word sums mod 2^32; "
                f"{protocol!r} needs each sum to fit the stage's bits: use Plaintext, SecAgg or SecAggPlus")
        bound = protocol.bind(bits=self.stages[-1].bits if ring else None)  # e.g. HE: signed values mod 2^bits
        need, smallest = bound.min_group_size, self.grouping.min_group_size(self.clients_per_round)
        if smallest < need:
            raise IncompatibleStagesError(
                f"{bound!r} needs groups of >= {need} clients but {self.grouping!r} over "
                f"{self.clients_per_round} clients makes groups of {smallest}; use larger buckets or one_group"
            )
        for size in {smallest, self.grouping.max_group_size(self.clients_per_round)}:
            bound.check_group_size(size)  # parameters (and their overrides) for every group size used
        return bound

    def _bind(self, stages: list[Stage]) -> list[Stage]:
        bound, out, in_ring = Bounds.UNBOUNDED, [], False
        group_size = self.grouping.max_group_size(self.clients_per_round)
        min_group_size = self.grouping.min_group_size(self.min_clients)  # the smallest group a round can have
        for stage in stages:
            if in_ring:
                raise IncompatibleStagesError(
                    f"{stage!r} comes after a ring stage; the stage that maps into the ring "
                    "(Quantize or DistributedDiscreteGaussian) must be the last"
                )
            if stage.output == "ring" and not in_ring:
                bound = Bounds(linf=max(bound.linf, 1.0), l2=math.hypot(bound.l2, 1.0))  # + the weight r <= 1
            in_ring = in_ring or stage.output == "ring"
            configured = stage.bind(bound_in=bound, group_size=group_size, min_group_size=min_group_size)
            bound = configured.value_bound(bound)
            out.append(configured)
        return out

    @property
    def min_clients(self) -> int:
        """The fewest clients a round can have: enough groups for the aggregator, big enough for the protocol."""
        need = self.protocol.min_group_size
        for n in range(1, self.clients_per_round + 1):
            if (self.grouping.num_groups(n) >= self.aggregator.min_inputs
                    and self.grouping.min_group_size(n) >= need):
                return n
        return self.clients_per_round

    def dp_event(self, contributors: int | None = None, shares: int | None = None) -> dp_accounting.DpEvent:
        """The privacy event of one round for one client: its group sum, holding the noise of
        ``contributors`` of the ``shares`` clients it was split over (default: all), over the stages."""
        events = [s.dp_event(contributors, shares) for s in self.stages]
        events = [e for e in events if not isinstance(e, dp_accounting.NoOpDpEvent)]
        if not events:
            return dp_accounting.NoOpDpEvent()
        return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)

    def server_dp_event(self, contributors: int | None = None, shares: int | None = None) -> dp_accounting.DpEvent:
        """The privacy event of one round for one participant, as the aggregation server sees it.

        The server knows who took part, so the ledger prices this without amplification by sampling.
        Distributed noise: the group sum's realized noise (``contributors`` of ``shares``) inside a
        secure sum, only the client's own share over ``Plaintext`` (``trust="simulation"``). Central
        noise: non-private (the server sees the sum before it adds the noise). Client noise: unchanged.
        """
        events = []
        for stage in self.stages:
            event = stage.dp_event(contributors, shares)
            if isinstance(event, dp_accounting.NoOpDpEvent):
                continue
            if stage.placement == "central":
                event = dp_accounting.NonPrivateDpEvent()
            elif stage.placement == "distributed" and not self.secure_sum:
                event = stage.dp_event(1, shares)  # the server sees the upload: one share of the noise
            events.append(event)
        if not events:
            return dp_accounting.NoOpDpEvent()
        return events[0] if len(events) == 1 else dp_accounting.ComposedDpEvent(events)

    def relative_weight(self, weight: float, top: float) -> float:
        """A client's weight in (0, 1]: w / weight_cap (capped), or w / the round's largest weight;
        1 for everyone in a private pipeline or one whose stages need uniform weights."""
        if self.uniform:
            return 1.0
        return min(weight, self.weight_cap) / self.weight_cap if self.weight_cap else weight / top

    def encode(self, update: Update, *, relative_weight: float, rng: np.random.Generator,
               group_size: int | None = None) -> Update:
        """Client side: run the real stages, append r and scale to [r x, r], then run the ring stages.

        ``group_size`` is the size of the client's group this round (noise shares are split over it).

        The weight travels inside the vector the protocol sums, so the server learns only the
        total weight of each group, never a client's own.
        """
        weighted = False
        for stage in self.stages:
            stage = stage.for_group(group_size) if group_size else stage  # noise shares follow the group
            if stage.output == "ring" and not weighted:
                update, weighted = self._weigh(update, relative_weight), True
            update = stage.encode(update, rng=rng)
        return update if weighted else self._weigh(update, relative_weight)

    @staticmethod
    def _weigh(update: Update, relative_weight: float) -> Update:
        values = np.append(update.values.astype(np.float64) * relative_weight, relative_weight)
        return update.replace(values.astype(np.float32))

    def run_round(
        self, updates: Sequence[Update], *, rng: np.random.Generator, dropouts: DropoutSchedule = NO_DROPOUTS,
        reference: np.ndarray | None = None, contexts: Mapping[int, bytes] | None = None,
    ) -> RoundOutput:
        """Encode every update, securely sum per group, decode, aggregate.

        ``reference``: the server's own update of this round (e.g. FLTrust's g0, shape [d]), passed as
        ``reference=`` to an aggregator that declares ``needs_reference``; other aggregators never see it.
        ``contexts``: each client's model binding (``secfl.protocols.binding.model_context`` of the model it
        trained on): under SecAgg/SecAgg+ members that trained on different models cannot complete a group's
        sum together. Other protocols do not bind (plaintext has nothing to protect; HE is not bound).

        Raises:
            ConfigurationError: more clients than ``clients_per_round``, a non-finite update, or no
                ``reference`` for an aggregator that needs one.
            InsufficientParticipantsError: fewer surviving groups than the aggregator needs.
            ProtocolError: from the protocol (dropouts below its threshold, bad messages ...).
        """
        start = time.perf_counter()
        needs_reference = self.aggregator.needs_reference
        if needs_reference and reference is None:
            raise ConfigurationError(
                f"{self.aggregator!r} needs the server's reference update of the round: pass "
                "run_round(..., reference=g0), g0 of shape [d] (e.g. the server's update on its root data)"
            )
        if len(updates) > self.clients_per_round:
            raise ConfigurationError(
                f"round has {len(updates)} clients but the pipeline was built for at most {self.clients_per_round}"
            )
        for update in updates:
            if update.values.dtype.kind == "f" and not np.all(np.isfinite(update.values)):
                raise ConfigurationError(f"client {update.client_id} sent a non-finite update")
            if update.values.shape != updates[0].values.shape:  # in the user's units, before any encoding
                raise ConfigurationError(
                    f"client {update.client_id} sent an update of shape {update.values.shape}, client "
                    f"{updates[0].client_id} one of {updates[0].values.shape}: every update of a round must have "
                    "the model's length (flatten the same model)")
        top = max((u.weight for u in updates), default=1.0)
        client_rngs = rng.spawn(len(updates) + 1)
        groups = self.grouping.assign([u.client_id for u in updates], rng=client_rngs[-1])
        size_of = {cid: len(group) for group in groups for cid in group}
        encoded = [self.encode(u, relative_weight=self.relative_weight(u.weight, top), rng=r,
                               group_size=size_of[u.client_id]) for u, r in zip(updates, client_rngs)]
        bind = {"contexts": contexts} if contexts is not None and self.protocol.binds_model else {}
        result = self.protocol.run(encoded, groups=groups, dropouts=dropouts, **bind)
        return self.conclude(result, groups, clients=len(updates), reference=reference, start=start)

    def conclude(self, result: RoundResult, groups: Sequence[Sequence[int]], *, clients: int,
                 reference: np.ndarray | None = None, start: float | None = None) -> RoundOutput:
        """The round's output from the protocol's per-group sums: decode, per-group means, the aggregator.

        ``run_round`` ends here; a transport that ran the protocol elsewhere (e.g. over Flower) calls it with
        the ``RoundResult`` it assembled, the groups it used and the number of clients that were encoded.
        """
        start = time.perf_counter() if start is None else start
        needs_reference = self.aggregator.needs_reference
        if needs_reference and reference is None:
            raise ConfigurationError(f"{self.aggregator!r} needs the server's reference update of the round")
        means, group_weights = [], []
        for total, alive in zip(result.sums, result.survivors):
            decoded = total
            for stage in reversed(self.stages):
                decoded = stage.decode(decoded, count=len(alive))
            decoded = np.asarray(decoded, dtype=np.float64)
            mass = decoded[-1]  # the sum of the survivors' relative weights
            if not mass > 0:
                raise ConfigurationError(
                    f"group total weight decoded as {mass:g}: the weights are too small for the quantization "
                    "scale (raise Quantize scale or lower weight_cap)"
                )
            means.append(decoded[:-1] / mass)
            group_weights.append(mass)
        if len(means) < self.aggregator.min_inputs:
            raise InsufficientParticipantsError(
                f"{self.aggregator!r} needs >= {self.aggregator.min_inputs} groups, {len(means)} survived"
            )
        group_means, group_weights_arr = np.stack(means), np.asarray(group_weights)
        extra = {"ids": [alive[0] if len(alive) == 1 else tuple(alive) for alive in result.survivors]} \
            if self.aggregator.takes_ids else {}
        if needs_reference:
            extra["reference"] = reference
        aggregate = self.aggregator(group_means, weights=group_weights_arr, **extra)
        measurements = dict(result.measurements)
        for stage in self.stages:
            measurements.update(stage.measurements())
        # the group whose sum kept the smallest fraction of its noise shares bounds this round's event
        contributors, shares = min(((len(alive), len(group)) for alive, group in zip(result.survivors, groups)),
                                   key=lambda pair: pair[0] / pair[1])
        event = self.dp_event(contributors, shares)
        if isinstance(event, dp_accounting.GaussianDpEvent):
            measurements["dp/noise_multiplier"] = event.noise_multiplier
        measurements.update({"pipeline/clients": float(clients), "pipeline/groups": float(len(means)),
                             "pipeline/seconds": time.perf_counter() - start,
                             "dp/contributors": float(contributors), "dp/shares": float(shares)})
        return RoundOutput(aggregate, group_means, group_weights_arr, result, measurements, event)

    def __repr__(self) -> str:
        return (f"Pipeline(stages={self.stages!r}, protocol={self.protocol!r}, grouping={self.grouping!r}, "
                f"aggregator={self.aggregator!r})")
