"""AutoFLIP's one-time federated loss exploration: explorers' squared deviations, summed securely.

Every explorer k trains its own copy of the same base model theta_b (here theta_b = the initial global model:
no client's data is baked into it) with Adam on its data for up to ``epochs`` epochs, stopping early when the
epoch-mean training loss has not improved for ``patience`` epochs. It clips its deviation to
||theta_k - theta_b||_2 <= C_e and sends D_k = (theta_k - theta_b)^2 (element-wise), so ||D_k||_2 <= C_e^2.

The server learns only the sum of the D_k: they go through a pipeline with the scenario's secure-sum
protocol (Quantize to the ring, then SecAgg / SecAgg+ / HE / Plaintext), one group of all explorers, or, as a
defence against explorers who lie, buckets of explorers whose bucket means are combined by a robust rule
(median or trimmed mean). With ``noise_multiplier`` z > 0 Gaussian noise of std z C_e^2 is split over the
explorers inside the sum (distributed DP; ``central`` over Plaintext), and the release is one DP event,
charged once to every explorer (no sampling).

Threat model: as the secure sum's; D_k is the leakiest upload of the method (a model trained long on one
client's data), which is why only its sum is released and why DP on that release is offered.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from secfl import registry
from secfl.exceptions import ConfigurationError
from secfl.fl.params import flatten
from secfl.grouping import Buckets, OneGroup
from secfl.pipeline import Pipeline
from secfl.stages import GaussianNoise, L2Clip, Quantize
from secfl.training.trainer import tensors
from secfl.types import Update

__all__ = ["ExplorationConfig", "explore_deviation", "guidance_pipeline", "indicators", "secure_guidance",
           "secure_support", "support_pipeline"]


@dataclass(frozen=True)
class ExplorationConfig:
    """epochs (max), patience (epochs without improvement), Adam lr, batch size, clip C_e, DP noise multiplier,
    and ``d_clip``: the L2 bound the release enforces on each D_k (None: C_e^2, which honest D_k meet by
    construction; smaller is a defence against explorers who concentrate their budget, and less DP noise)."""

    epochs: int = 20
    patience: int = 5
    lr: float = 3e-4
    batch_size: int = 32
    clip: float = 1.0
    noise_multiplier: float = 0.0
    d_clip: float | None = None

    @property
    def bound(self) -> float:
        """The L2 norm every D_k is clipped to in the release (its DP sensitivity)."""
        return self.clip**2 if self.d_clip is None else self.d_clip


def explore_deviation(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, config: ExplorationConfig,
                      seed: int) -> np.ndarray:
    """One explorer: train a copy of ``model`` (Adam, early stopping) and return its clipped D_k (float32 [d])."""
    inputs, targets = tensors(x, y)
    trained = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(trained.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    best, waited = math.inf, 0
    for _ in range(config.epochs):
        total = 0.0
        for batch in torch.randperm(len(targets), generator=generator).split(config.batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(trained(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        mean = total / len(targets)  # the epoch-mean loss (not the last batch's, which is noisy)
        if mean < best - 1e-6:
            best, waited = mean, 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    deviation = flatten(trained).astype(np.float64) - flatten(model).astype(np.float64)
    norm = float(np.linalg.norm(deviation))
    if norm > config.clip:
        deviation *= config.clip / norm
    return (deviation**2).astype(np.float32)


def guidance_pipeline(explorers: int, *, protocol: dict, config: ExplorationConfig, buckets: int = 0,
                      rule: str = "median", unit: bool = False) -> Pipeline:
    """The pipeline that sums the explorers' D_k: clip to C_e^2 (a no-op for honest D_k, a bound for liars),
    optional Gaussian noise, Quantize to the ring, the scenario's protocol, one group or ``buckets`` buckets
    combined by ``rule``. Its ``dp_event()`` prices the release. ``unit``: every coordinate is clamped to
    [-1, 1] too (0/1 indicators: a liar adds at most 1 to a coordinate's count). Raises ConfigurationError
    when the explorers cannot go through the protocol (too few for its groups or the buckets)."""
    bound = config.bound
    placement = "central" if protocol.get("kind") == "plaintext" else "distributed"
    noise = [GaussianNoise(config.noise_multiplier, placement=placement)] if config.noise_multiplier > 0 else []
    if buckets:
        if explorers < 2 * buckets:
            raise ConfigurationError(f"{explorers} explorers cannot fill {buckets} buckets of at least 2 (a bucket of "
                                     "one would expose its explorer's D_k): lower autoflip.buckets")
        grouping = Buckets(size=math.ceil(explorers / buckets))
        aggregator = registry.build("aggregator", {"kind": rule})
    else:
        grouping, aggregator = OneGroup(), registry.build("aggregator", {"kind": "mean"})
    error = None
    for bits in (36, 28, 20):  # the finest resolution the protocol's ring holds (honest D_k are tiny)
        stages = [L2Clip(bound), *noise, Quantize(scale=2.0**bits / bound, **({"bound": 1.0} if unit else {}))]
        try:
            return Pipeline(clients_per_round=explorers, stages=stages, protocol=registry.build("protocol", protocol),
                            grouping=grouping, aggregator=aggregator)
        except ConfigurationError as exc:
            error = exc
            if "bits" not in str(exc):  # not a ring-size problem: a finer or coarser scale will not help
                break
    raise ConfigurationError(f"AutoFLIP's exploration cannot go through {protocol.get('kind')!r} with "
                             f"{explorers} explorers: {error}")


def secure_guidance(deviations: Sequence[Update], *, protocol: dict, config: ExplorationConfig,
                    rng: np.random.Generator, buckets: int = 0, rule: str = "median") -> np.ndarray:
    """The mean of the explorers' D_k as a secure sum releases it (or the robust rule over ``buckets``
    bucket means); negative values (noise) are set to 0."""
    pipeline = guidance_pipeline(len(deviations), protocol=protocol, config=config, buckets=buckets, rule=rule)
    out = pipeline.run_round(list(deviations), rng=rng)
    return np.maximum(np.asarray(out.aggregate, dtype=np.float64), 0.0)


def indicators(deviations: Sequence[Update], *, q: float) -> list[Update]:
    """Each explorer's 0/1 vector: 1 where its own D_k is in its top (1 - q)."""
    return [u.replace((u.values > np.quantile(u.values, q)).astype(np.float32)) for u in deviations]


def support_pipeline(explorers: int, dim: int, *, protocol: dict) -> Pipeline:
    """The second secure sum of ``min_support``: indicators, every coordinate clamped to [-1, 1] (no noise:
    ``AutoFlip.check`` refuses it beside a DP exploration)."""
    config = ExplorationConfig(clip=1.0, d_clip=float(np.sqrt(dim)))
    return guidance_pipeline(explorers, protocol=protocol, config=config, unit=True)


def secure_support(updates: Sequence[Update], *, protocol: dict, rng: np.random.Generator) -> np.ndarray:
    """How many explorers marked each coordinate (the sum of their indicators, rounded)."""
    pipeline = support_pipeline(len(updates), updates[0].values.size, protocol=protocol)
    out = pipeline.run_round(list(updates), rng=rng)
    return np.rint(np.asarray(out.aggregate, dtype=np.float64) * len(updates))
