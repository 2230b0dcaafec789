"""Round hooks: how methods, attacks and audits take part in the engine's round without changing it.

The engine runs one round as: ``before_round`` (the server prepares public state: step sizes sent with the
model, a reference update, canaries) -> for every sampled client: ``supplied`` (a hook that provides the
client's update itself, e.g. an audit canary) or ``skips_training`` (a Byzantine client whose update is forged
later), else ``client_data`` -> the trainer -> ``client_vector`` -> ``round_updates`` (forged updates join) ->
the pipeline (stages, secure sum, aggregator) -> ``after_sum`` (observers) -> ``server_delta`` (the method maps
the aggregate to a model step) -> the server step -> ``after_step`` -> ``metrics``. ``state_dict`` /
``load_state_dict`` let a hook keep state in the run's checkpoint. Hooks run in the order given; every
method has a default that does nothing.

What a hook cannot do: replace the pipeline or its aggregator. It may hand the aggregator a per-round reference
update (``RoundContext.reference``), which the pipeline passes only to an aggregator that declares it needs one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from secfl.exceptions import ConfigurationError
from secfl.fl.params import num_params
from secfl.training import Hyper, LocalResult, SgdTrainer, Task
from secfl.types import Update

__all__ = ["RoundContext", "RoundHook", "Observer", "RoundSeen", "FixedUpdates", "ServerReference"]


@dataclass
class RoundContext:
    """What one round's hooks share.

    Attributes:
        round: the round number (from 1).
        seed: the run's seed.
        model: the global model of this round (hooks must not change it before ``server_delta``).
        sampled: the sampled client ids, in order.
        data: the run's dataset; ``shards``: every client's example indices.
        pipeline: the checked pipeline (read-only for hooks).
        public: public state the clients receive with the model (e.g. FedBAT's ``alpha0``).
        reference: a reference update for aggregators that need one (e.g. FLTrust's root-data update).
        output: the pipeline's ``RoundOutput`` once the secure sum ran.
        hooks: every hook of the run, in order (a hook that makes a side release offers it to the others).
        release: call ``release(name)`` right before a one-time release the method declared
            (``Method.releases``): the engine records it durably and charges it to the privacy ledger.
        cohort: if set (by the method's ``before_round``), ``cohort(cid)`` keys the clients whose vectors share
            one coordinate system (e.g. FedAgg: logits on one edge's bridge set); None: every client's do. An
            omniscient attacker forges from the honest vectors of its own cohort.
    """

    round: int
    seed: int
    model: torch.nn.Module
    sampled: list[int]
    data: Any
    shards: list[np.ndarray]
    pipeline: Any
    public: dict[str, Any] = field(default_factory=dict)
    reference: np.ndarray | None = None
    output: Any = None
    hooks: list[RoundHook] = field(default_factory=list)
    release: Callable[[str], None] = lambda name: None
    cohort: Callable[[int], int] | None = None


class RoundHook:
    """A participant in every round; override what you need (all defaults do nothing)."""

    def before_round(self, ctx: RoundContext) -> None:
        """The server's preparation, before any client trains."""

    def supplied(self, ctx: RoundContext, cid: int) -> Update | None:
        """The update client ``cid`` sends instead of training, or None."""
        return None

    def skips_training(self, ctx: RoundContext, cid: int) -> bool:
        """True if client ``cid`` does not train (its update comes from ``round_updates``)."""
        return False

    def client_data(self, ctx: RoundContext, cid: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The data client ``cid`` trains on (e.g. poisoned)."""
        return x, y

    def client_vector(self, ctx: RoundContext, cid: int, result: LocalResult, vector: np.ndarray) -> np.ndarray:
        """The vector client ``cid`` sends, from its training result (``vector``: what earlier hooks made)."""
        return vector

    def round_updates(self, ctx: RoundContext, updates: dict[int, Update]) -> dict[int, Update]:
        """Every update of the round by client id (the clients that skipped training may be added here)."""
        return updates

    def after_sum(self, ctx: RoundContext) -> None:
        """Called once ``ctx.output`` holds the pipeline's result, before the server step."""

    def side_release(self, ctx: RoundContext, name: str, updates: list[Update], *, bound: float,
                     recompute: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> list[Update]:
        """What clients send in a release outside the round's training (``name``, e.g. ``"autoflip/explore"``),
        possibly rewritten (a Byzantine client lies). ``bound``: the L2 norm the release clips each vector to;
        ``recompute(cid, x, y)``: what client ``cid`` would send had it held data (x, y)."""
        return updates

    def server_delta(self, ctx: RoundContext, delta: np.ndarray) -> np.ndarray:
        """The model delta of the server step, from the aggregate (``delta``: what earlier hooks made)."""
        return delta

    def after_step(self, ctx: RoundContext) -> None:
        """Called right after the server step, before evaluation (e.g. re-apply a pruning mask that the
        server optimizer's momentum could otherwise move)."""

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        """Add this hook's numbers to the round's metrics row (after the server step)."""

    def state_dict(self) -> Mapping[str, Any] | None:
        """What the checkpoint keeps for this hook (tensors, numbers, lists, dicts), or None."""
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


@dataclass(frozen=True)
class RoundSeen:
    """One round as an omniscient auditor sees it: the live model before the server step (copy it to keep
    it), the sampled clients in order, the pipeline's ``RoundOutput`` (group means, the protocol's view, the
    aggregate), the dataset and every client's example indices (``shards``)."""

    round: int
    model: torch.nn.Module
    sampled: list[int]
    output: Any
    data: Any
    shards: list[np.ndarray]


class Observer(RoundHook):
    """Calls ``callback(RoundSeen)`` every round after the secure sum (audits)."""

    def __init__(self, callback: Callable[[RoundSeen], None]) -> None:
        self.callback = callback

    def after_sum(self, ctx: RoundContext) -> None:
        self.callback(RoundSeen(ctx.round, ctx.model, ctx.sampled, ctx.output, ctx.data, ctx.shards))


class FixedUpdates(RoundHook):
    """Clients that send a fixed vector whenever they are sampled instead of training (audit canaries).

    ``updates`` maps client ids to vectors (a mapping may make them on demand); the ids are checked now,
    each vector when it is sent (a finite float vector of the model's length)."""

    def __init__(self, updates: Mapping[int, np.ndarray], num_clients: int) -> None:
        for cid in updates:
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)) or not 0 <= cid < num_clients:
                raise ConfigurationError(f"fixed update for client {cid!r}: pass ids in [0, {num_clients})")
        self.updates = updates

    def supplied(self, ctx: RoundContext, cid: int) -> Update | None:
        if cid not in self.updates:
            return None
        v, d = np.asarray(self.updates[cid]), num_params(ctx.model)
        if v.shape != (d,) or v.dtype.kind != "f" or not np.all(np.isfinite(v)):
            raise ConfigurationError(f"fixed update for client {cid}: pass a finite float vector of length {d}")
        return Update(cid, v, weight=float(max(len(ctx.shards[cid]), 1)))


class ServerReference(RoundHook):
    """The server trains on its root data (``size`` training examples fixed by the seed) from the current
    model, with the clients' hyper-parameters; that update is the round's ``reference`` (FLTrust's g0).
    ``seed_of(round)`` gives the training seed (the engine passes the seed of a client id no client has)."""

    def __init__(self, size: int, hyper: Hyper, seed_of: Callable[[int], int]) -> None:
        self.size, self.hyper, self.seed_of = size, hyper, seed_of

    def before_round(self, ctx: RoundContext) -> None:
        n = len(ctx.data.y_train)
        root = np.random.default_rng([ctx.seed, 4]).choice(n, size=min(self.size, n), replace=False)
        task = Task(ctx.model, ctx.data.x_train[root], ctx.data.y_train[root], self.seed_of(ctx.round), self.hyper)
        ctx.reference = SgdTrainer().train(task).delta
