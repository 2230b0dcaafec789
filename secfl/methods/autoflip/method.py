"""AutoFLIP as a method: options (the scenario's ``[autoflip]`` table), the masked trainer, and the hook that
runs the one-time exploration before round 1, holds the public mask, compacts what clients send and expands
the aggregate (see docs/methods/autoflip.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import dp_accounting
import numpy as np
import torch
from pydantic import Field

from secfl.exceptions import ConfigurationError
from secfl.fl.params import num_params
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.autoflip.explore import (ExplorationConfig, explore_deviation, guidance_pipeline, indicators,
                                            secure_guidance, secure_support, support_pipeline)
from secfl.methods.autoflip.flops import flops_per_step
from secfl.methods.autoflip.guidance import Mask, hybrid_mask, normalized_scores, random_scores
from secfl.methods.autoflip.trainer import MaskedTrainer
from secfl.methods.base import Method, MethodOptions
from secfl.training import LocalResult, Trainer
from secfl.types import Update

__all__ = ["AutoFlip", "AutoFlipOptions"]


class AutoFlipOptions(MethodOptions):
    q: float = Field(0.3, ge=0, lt=1, description="fraction of all parameters pruned")
    q_structured: float = Field(0.2, ge=0, lt=1, description="quantile of hidden-unit scores removed as whole units")
    mask: Literal["autoflip", "random"] = Field("autoflip", description="random: the baseline at the same ratio")
    explorers: float = Field(1.0, gt=0, le=1, description="fraction of the clients that explore")
    explore_epochs: int = Field(20, ge=1)
    patience: int = Field(5, ge=1, description="early stopping on the epoch-mean training loss")
    explore_lr: float = Field(3e-4, gt=0, description="the explorers' Adam learning rate")
    explore_batch_size: int = Field(32, ge=1)
    clip: float = Field(1.0, gt=0, description="C_e: ||theta_k - theta_b||_2 is clipped to it before squaring")
    d_clip: float | None = Field(None, gt=0, description="defence: the L2 bound on each D_k in the release "
                                 "(default C_e^2); also the DP sensitivity")
    noise_multiplier: float = Field(0.0, ge=0, description="DP on the summed D_k: noise std z * (d_clip or C_e^2)")
    min_support: int = Field(0, ge=0, description="defence: prune coordinates fewer than this many explorers put "
                             "in their own top (1 - q) (a second secure sum, of indicators)")
    buckets: int = Field(0, ge=0, description="defence: robust rule over this many bucket sums (0: one secure sum)")
    rule: Literal["median", "trimmed_mean"] = Field("median", description="the robust rule over bucket means")
    adaptive: bool = Field(False, description="recompute the mask every round from that round's participating "
                           "explorers (their D_k summed securely again: one more release each round)")


class AutoFlip(Method):
    """AutoFLIP (Internò et al., arXiv 2405.10271): federated loss exploration, then hybrid pruning."""

    name: ClassVar[str] = "autoflip"
    Options: ClassVar[type[AutoFlipOptions]] = AutoFlipOptions

    @classmethod
    def check(cls, scenario: Any, options: AutoFlipOptions) -> None:
        if scenario.client.mode != "fedavg":
            raise ValueError("method 'autoflip' trains local epochs: client.mode = \"gradient\" works only with "
                             "method \"fedavg\"")
        if any(s.get("kind") in ("ddgauss", "fedbat_pack", "fedbat_bits", "ewwa") for s in scenario.stages):
            raise ValueError("method 'autoflip' sends a compacted vector: stages that need the model's dimension "
                             "(ddgauss, fedbat_*, ewwa) do not apply")
        if options.adaptive and (options.min_support or options.mask == "random"):
            raise ValueError("autoflip.adaptive re-sums the explorers' D_k every round: it works with mask = "
                             "\"autoflip\" and without min_support")
        if options.min_support and options.noise_multiplier:
            raise ValueError("autoflip.min_support releases a second, un-noised sum: it cannot be combined with "
                             "autoflip.noise_multiplier")
        if options.buckets and options.buckets < 3:
            raise ValueError("autoflip.buckets: a robust rule needs >= 3 buckets (or 0 for one secure sum)")
        n = _explorer_count(scenario, options)
        if options.min_support > n:
            raise ValueError(f"autoflip.min_support = {options.min_support} exceeds the {n} explorers: no coordinate "
                             "could ever be supported")
        try:  # the exploration's secure sums, built now so a protocol or bucket mismatch surfaces before training
            guidance_pipeline(n, protocol=scenario.protocol, config=_config(options), buckets=options.buckets,
                              rule=options.rule)
            if options.min_support:
                support_pipeline(n, 2, protocol=scenario.protocol)
        except ConfigurationError as exc:
            raise ValueError(f"autoflip: {exc}") from None

    def trainer(self) -> Trainer:
        return MaskedTrainer()

    def hooks(self) -> list[RoundHook]:
        return [Pruning(self.scenario, self.options)]

    @classmethod
    def releases(cls, scenario: Any, options: AutoFlipOptions) -> dict[str, tuple[Any, Any, int]]:
        """The exploration (non-private without noise: then every DP claim is void) and, with min_support,
        the un-noised indicator sum."""
        if options.mask == "random":  # the baseline explores nothing
            return {}
        times = scenario.run.rounds if options.adaptive else 1  # adaptive: a re-sum every round, at most
        none = dp_accounting.NonPrivateDpEvent()
        out = {"exploration": (none, none, times)}
        if options.noise_multiplier:
            pipeline = guidance_pipeline(_explorer_count(scenario, options), protocol=scenario.protocol,
                                         config=_config(options), buckets=options.buckets, rule=options.rule)
            out["exploration"] = (pipeline.dp_event(), pipeline.server_dp_event(), times)
        if options.min_support:
            out["support"] = (none, none, 1)
        return out

    @classmethod
    def reshapes(cls, scenario: Any, options: AutoFlipOptions) -> bool:
        return True  # only the kept coordinates travel


def _config(o: AutoFlipOptions) -> ExplorationConfig:
    return ExplorationConfig(epochs=o.explore_epochs, patience=o.patience, lr=o.explore_lr,
                             batch_size=o.explore_batch_size, clip=o.clip, noise_multiplier=o.noise_multiplier,
                             d_clip=o.d_clip)


def _explorer_count(scenario: Any, o: AutoFlipOptions) -> int:
    return max(1, round(o.explorers * scenario.data.num_clients))


class Pruning(RoundHook):
    """Explores once (before round 1), then keeps the public mask: clients get it with the model, send only
    the kept coordinates, and the server expands the aggregate back (pruned coordinates never move)."""

    def __init__(self, scenario: Any, options: AutoFlipOptions) -> None:
        self.scenario, self.options = scenario, options
        self.mask: Mask | None = None
        self.flops_full = 0.0
        self.deviations: list[Update] = []  # adaptive: every explorer's D_k (each explorer keeps its own)
        self.changed = 0.0

    def before_round(self, ctx: RoundContext) -> None:
        before = self.mask
        if self.mask is None:
            self.mask = self._explore(ctx)
        elif self.options.adaptive:
            self.mask = self._adapt(ctx)
        self.changed = 0.0 if before is None else float(np.mean(before.keep != self.mask.keep))
        if self.mask is not before:
            self.after_step(ctx)  # the server prunes its model
        if not self.flops_full:
            shape = tuple(ctx.data.input_shape)
            self.flops_full = float(flops_per_step(ctx.model, shape, self.scenario.client.batch_size))
        ctx.public["autoflip"] = self.mask

    def _explore(self, ctx: RoundContext) -> Mask:
        o, n = self.options, _explorer_count(self.scenario, self.options)
        rng = np.random.default_rng([ctx.seed, 11])
        if o.mask == "random":
            return hybrid_mask(ctx.model, random_scores(ctx.model, rng), q=o.q, q_structured=o.q_structured)
        explorers = sorted(int(c) for c in rng.choice(self.scenario.data.num_clients, size=n, replace=False))
        config = _config(o)
        deviations = []
        for cid in explorers:
            idx = ctx.shards[cid]
            seed = int(np.random.SeedSequence([ctx.seed, 12, cid]).generate_state(1)[0])
            deviation = explore_deviation(ctx.model, ctx.data.x_train[idx], ctx.data.y_train[idx], config, seed)
            deviations.append(Update(cid, deviation))

        def recompute(cid: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
            seed = int(np.random.SeedSequence([ctx.seed, 14, cid]).generate_state(1)[0])
            return explore_deviation(ctx.model, x, y, config, seed)

        for hook in ctx.hooks:  # Byzantine explorers rewrite their D_k
            deviations = hook.side_release(ctx, "autoflip/explore", deviations, bound=config.bound,
                                           recompute=recompute)
        if o.adaptive:
            self.deviations = deviations
            return self._adapt(ctx) if self._taking_part(ctx) is not None else self._from_all(ctx, deviations,
                                                                                                  recompute)
        return self._from_all(ctx, deviations, recompute)

    def _taking_part(self, ctx: RoundContext) -> list[Update] | None:
        """The D_k of this round's participating explorers, or None if too few take part for the protocol."""
        o, sampled = self.options, set(ctx.sampled)
        taking_part = [u for u in self.deviations if u.client_id in sampled]
        try:
            guidance_pipeline(len(taking_part), protocol=self.scenario.protocol, config=_config(o), buckets=o.buckets,
                              rule=o.rule)
        except ConfigurationError:
            return None
        return taking_part

    def _adapt(self, ctx: RoundContext) -> Mask:
        """The mask from this round's participating explorers (the current one if too few take part)."""
        o, taking_part = self.options, self._taking_part(ctx)
        if taking_part is None:
            return self.mask
        ctx.release("exploration")
        guidance = secure_guidance(taking_part, protocol=self.scenario.protocol, config=_config(o),
                                   rng=np.random.default_rng([ctx.seed, 13, ctx.round]), buckets=o.buckets,
                                   rule=o.rule)
        return hybrid_mask(ctx.model, normalized_scores(ctx.model, guidance), q=o.q, q_structured=o.q_structured)

    def _from_all(self, ctx: RoundContext, deviations: list[Update],
                  recompute: Callable[[int, np.ndarray, np.ndarray], np.ndarray]) -> Mask:
        """The one-time mask from every explorer's D_k (plus min_support's count)."""
        o, config = self.options, _config(self.options)
        ctx.release("exploration")
        guidance = secure_guidance(deviations, protocol=self.scenario.protocol, config=config,
                                   rng=np.random.default_rng([ctx.seed, 13]), buckets=o.buckets, rule=o.rule)
        scores = normalized_scores(ctx.model, guidance)
        if o.min_support:
            marks = indicators(deviations, q=o.q)
            for hook in ctx.hooks:  # Byzantine explorers may mark what they like (at most 1 per coordinate counts)
                marks = hook.side_release(ctx, "autoflip/support", marks, bound=float(np.sqrt(marks[0].values.size)),
                                          recompute=lambda cid, x, y: indicators(
                                              [Update(cid, recompute(cid, x, y))], q=o.q)[0].values)
            ctx.release("support")
            support = secure_support(marks, protocol=self.scenario.protocol, rng=np.random.default_rng([ctx.seed, 15]))
            scores[support < o.min_support] = 0.0
        return hybrid_mask(ctx.model, scores, q=o.q, q_structured=o.q_structured)

    def after_step(self, ctx: RoundContext) -> None:
        """Zero the pruned weights of the server's model (its optimizer's momentum, after a mask change,
        would otherwise move them)."""
        with torch.no_grad():
            offset = 0
            for param in ctx.model.parameters():
                keep = self.mask.keep[offset:offset + param.numel()]
                param.mul_(torch.from_numpy(keep.astype(np.float32)).view_as(param))
                offset += param.numel()

    def client_vector(self, ctx: RoundContext, cid: int, result: LocalResult, vector: np.ndarray) -> np.ndarray:
        return vector[self.mask.keep]

    def server_delta(self, ctx: RoundContext, delta: np.ndarray) -> np.ndarray:
        d = num_params(ctx.model)
        if delta.shape != (int(np.count_nonzero(self.mask.keep)),):
            raise ConfigurationError(f"the aggregate has {delta.size} values, the mask keeps "
                                     f"{int(np.count_nonzero(self.mask.keep))} of {d}")
        full = np.zeros(d, dtype=np.float64)
        full[self.mask.keep] = delta
        return full

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        row["sparsity"] = self.mask.sparsity
        row["kept_parameters"] = int(np.count_nonzero(self.mask.keep))
        row["client_flops_full"] = self.flops_full
        if self.options.adaptive:
            row["mask_changed"] = self.changed  # the fraction of decisions this round's mask changed

    def state_dict(self) -> dict[str, Any] | None:
        if self.mask is None:
            return None
        return {**self.mask.state_dict(), "deviations": {int(u.client_id): torch.from_numpy(u.values.copy())
                                                         for u in self.deviations}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mask = Mask.from_state(state)
        self.deviations = [Update(int(c), v.numpy()) for c, v in sorted(state.get("deviations", {}).items())]
