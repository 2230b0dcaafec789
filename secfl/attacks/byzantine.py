"""Byzantine clients in the engine: who they are, how they poison their data, and the updates they forge.

The f Byzantine clients are fixed for a run (drawn from ``run.seed``). Update attacks are omniscient: each
round the Byzantine clients of that round see the honest clients' vectors (exactly what those send to the
pipeline) and send ``attack(honest, num_byzantine=f_t, rng=...)`` instead of training. Data attacks
(``label_flip``, ``backdoor``) train honestly on poisoned data; ``boost`` scales their update (model
replacement). Byzantine vectors then go through the same client stages as honest ones: the adversary lies
about its input but follows the protocol (a client skipping its own clip is met by the server's
pre-aggregators, e.g. ``static_clip``, which act on what arrives).

An adaptive attack is given the pipeline's aggregator applied to individual vectors; with buckets or a
secure sum the real rule sees group means, so the attack's search is then an approximation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from secfl.attacks import UPDATE_ATTACKS, build_attack
from secfl.attacks.backdoor import PixelTrigger, flip_labels
from secfl.exceptions import ConfigurationError
from secfl.hooks import RoundContext, RoundHook
from secfl.types import Update

DATA_ATTACKS = ("label_flip", "backdoor", "none")  # none: honest training (e.g. only an exploration attack)


def check_attack(kind: str, options: dict[str, Any]) -> None:
    """Raise ValueError (for the scenario validator) if ``kind``/``options`` do not make an attack."""
    if kind in DATA_ATTACKS:
        if options:
            raise ValueError(f"attack {kind!r} takes no options (use attack.target, trigger_size, poison_fraction, boost)")
        return
    if kind not in UPDATE_ATTACKS:
        raise ValueError(f"unknown attack {kind!r}; choose one of {', '.join([*UPDATE_ATTACKS, *DATA_ATTACKS])}")
    try:
        build_attack({"kind": kind, **options})
    except ConfigurationError as error:
        raise ValueError(str(error)) from None


class Adversary(RoundHook):
    """The run's Byzantine clients and their attack (``scenario.attack``), over data with ``num_classes``.

    As a round hook: update attackers skip training and forge their vectors from the honest ones; data
    attackers train on poisoned data and boost their vectors; ``asr`` joins the metrics of a backdoor run."""

    def __init__(self, spec: Any, *, num_clients: int, seed: int, num_classes: int, trigger_value: float) -> None:
        self.spec, self.num_classes = spec, num_classes
        chosen = np.random.default_rng([seed, 5]).choice(num_clients, size=spec.num_byzantine, replace=False)
        self.ids = frozenset(int(c) for c in chosen)
        self.update_attack = build_attack({"kind": spec.kind, **spec.options}) if spec.kind in UPDATE_ATTACKS else None
        self.trigger = PixelTrigger(target=spec.target, size=spec.trigger_size, value=trigger_value) \
            if spec.kind == "backdoor" else None

    def is_byzantine(self, cid: int) -> bool:
        return cid in self.ids

    def trains(self, cid: int) -> bool:
        """Whether client ``cid`` trains this round (update attackers forge their vector instead)."""
        return not (self.is_byzantine(cid) and self.update_attack is not None)

    def poison(self, cid: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The training data client ``cid`` uses (changed only for a Byzantine data attacker)."""
        if not self.is_byzantine(cid):
            return x, y
        if self.spec.kind == "label_flip":
            return x, flip_labels(y, self.num_classes)
        if self.trigger is not None:
            return self.trigger.poison(x, y, fraction=self.spec.poison_fraction, rng=rng)
        return x, y

    def boost(self, cid: int, values: np.ndarray) -> np.ndarray:
        """Model replacement: a Byzantine data attacker's update times ``boost``."""
        return values * self.spec.boost if self.is_byzantine(cid) and self.spec.boost != 1.0 else values

    def forge(self, honest: list[Update], byzantine: list[int], *, rng: np.random.Generator,
              aggregator: Callable[[np.ndarray], np.ndarray]) -> list[Update]:
        """The Byzantine clients' updates of this round, crafted from the honest ones (weights: the honest mean)."""
        if not byzantine or self.update_attack is None:
            return []
        if not honest:
            raise ConfigurationError("a round (or a cohort of it, e.g. one FedAgg edge) has Byzantine clients only: an "
                                     "omniscient attack needs honest updates")
        vectors = np.stack([u.values.astype(np.float64) for u in honest])
        forged = self.update_attack(vectors, num_byzantine=len(byzantine), rng=rng, aggregator=aggregator)
        weight = float(np.mean([u.weight for u in honest]))
        return [Update(cid, row.astype(np.float32), weight=weight) for cid, row in zip(byzantine, forged)]

    def metrics_of(self, model: Any, x_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
        """``asr`` for a backdoor, nothing otherwise."""
        return {"asr": self.trigger.success_rate(model, x_test, y_test)} if self.trigger is not None else {}

    # the round hook
    def skips_training(self, ctx: RoundContext, cid: int) -> bool:
        return not self.trains(cid)

    def client_data(self, ctx: RoundContext, cid: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.poison(cid, x, y, np.random.default_rng([ctx.seed, 6, ctx.round, cid]))

    def client_vector(self, ctx: RoundContext, cid: int, result: Any, vector: np.ndarray) -> np.ndarray:
        return self.boost(cid, vector)

    def round_updates(self, ctx: RoundContext, updates: dict[int, Update]) -> dict[int, Update]:
        rule = ctx.pipeline.aggregator
        extra = {"reference": ctx.reference} if rule.needs_reference else {}  # e.g. FLTrust: this round's g0
        rng = np.random.default_rng([ctx.seed, 7, ctx.round])
        cohort = ctx.cohort if ctx.cohort is not None else (lambda cid: 0)
        forged: list[Update] = []
        for key in sorted({cohort(cid) for cid in ctx.sampled}):  # forge from vectors in the same coordinates
            members = [cid for cid in ctx.sampled if cohort(cid) == key]
            byzantine = [cid for cid in members if not self.trains(cid)]
            honest = [updates[cid] for cid in members if not self.is_byzantine(cid)]
            forged += self.forge(honest, byzantine, rng=rng, aggregator=lambda v: copy.deepcopy(rule)(v, **extra))
        return {**updates, **{u.client_id: u for u in forged}}

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        row["byzantine"] = sum(self.is_byzantine(cid) for cid in ctx.sampled)
        row.update(self.metrics_of(ctx.model, ctx.data.x_test, ctx.data.y_test))

    def side_release(self, ctx: RoundContext, name: str, updates: list[Update], *, bound: float,
                     recompute: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> list[Update]:
        """AutoFLIP's exploration (``spec.explore``): each Byzantine explorer spends its whole L2 budget."""
        kind = getattr(self.spec, "explore", "none")
        if name != "autoflip/explore" or kind == "none":
            return updates
        out = []
        for update in updates:
            cid = update.client_id
            if not self.is_byzantine(cid):
                out.append(update)
                continue
            idx = ctx.shards[cid]
            x, y = ctx.data.x_train[idx], ctx.data.y_train[idx]
            if kind == "inflate":  # the coordinates its poisoned training moves most
                x, y = self.poison(cid, x, y, np.random.default_rng([ctx.seed, 6, 0, cid]))
                source = recompute(cid, x, y)
            else:
                source = update.values
            out.append(update.replace(lie(kind, source, fraction=self.spec.explore_fraction, bound=bound)))
        return out


def lie(kind: str, deviation: np.ndarray, *, fraction: float, bound: float) -> np.ndarray:
    """A lying explorer's D: ``inflate`` puts the whole budget ``bound`` (L2) evenly on the top ``fraction`` of
    ``deviation``'s coordinates; ``deflate`` reports 0 there and spreads the budget over the bottom ones."""
    d = deviation.size
    k = max(1, int(round(fraction * d)))
    order = np.argsort(-deviation, kind="stable")
    out = np.zeros(d, dtype=np.float32)
    chosen = order[:k] if kind == "inflate" else order[-k:]
    out[chosen] = bound / np.sqrt(k)
    return out
