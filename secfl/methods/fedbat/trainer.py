"""FedBAT's local trainer: binarization-aware training of every Conv2d/Linear weight (Li et al., ICML 2024).

Every Conv2d/Linear weight W_l stays frozen; an update m_l and a scalar a_l start at zero (``layers``). Of the
S = epochs * (batches per epoch) optimizer steps, the first floor(phi * S) (warm-up) use W_l + m_l. Then
alpha0_l = mean|m_l| (the lower clamp if 0) is fixed, or the round's public alpha0_l (``task.public["alpha0"]``,
the secure route), and the rest use W_l + B(m_l; alpha_l) with alpha_l = clamp(alpha0_l exp(rho a_l)). SGD
updates {m_l, a_l} and every other parameter (weight decay therefore shrinks m_l, not W_l + m_l). The upload is
a fresh sample of B(m_l; alpha_l) per layer (one bit per weight plus alpha_l) and the fp32 deltas of the rest.

It is a ``LoopTrainer``, so DP-SGD wraps it like any other (``fit(..., privacy=DpSgd(config))``); warm-up
then counts Opacus's Poisson steps, empty batches included. The binarizer's generators derive from the
trainer's stream (the seed, plus DP-SGD's prior steps), so equal inputs give an identical result.

Privacy note: FedBAT is NOT differential privacy by itself (see docs/methods/fedbat.md, section 5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from secfl.checks import check_number
from secfl.exceptions import ConfigurationError
from secfl.methods.fedbat.binarize import STREAM_TAG, check_alphas, check_clamp, sample_bits
from secfl.methods.fedbat.layers import bat_model
from secfl.training import DpSgd, DpSgdConfig, Hyper, LocalResult, LoopTrainer, Setup, Task

__all__ = ["FedBatResult", "FedBatTrainer", "fedbat_local_train"]


@dataclass(frozen=True)
class FedBatResult:
    """The upload of one FedBAT client, and the delta the server reconstructs from it.

    Attributes:
        delta: float32 ``[d]`` in ``flatten(model)`` order: ``alpha_l (2 b_l - 1)`` at the coordinates of each
            binarized weight, the trained-minus-initial fp32 delta everywhere else. The server adds this.
        bits: binarized weight's parameter name (e.g. ``"1.weight"``) -> uint8 ``[|W_l|]`` of ``b_l`` in {0, 1}.
        alphas: same keys -> ``alpha_l`` (the float32 value, as a Python float).
        binarized_mask: bool ``[d]``: True at the coordinates sent as bits.
        num_examples, loss: as in ``LocalResult``.
        raw: float32 ``[d]``: ``delta`` with the trained update m_l (before the upload's binarization) at the
            binarized coordinates; what a secure or DP route binarizes itself.
        warmup_mean_abs: same keys as ``alphas`` -> mean|m_l| at the end of the warm-up (FedBAT's own alpha0).
        state: the client's state to keep (DP-SGD's accountant and epsilon), as in ``LocalResult``.
    """

    delta: np.ndarray
    bits: dict[str, np.ndarray]
    alphas: dict[str, float]
    binarized_mask: np.ndarray
    num_examples: int
    loss: float
    raw: np.ndarray | None = None
    warmup_mean_abs: dict[str, float] | None = None
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def num_binarized(self) -> int:
        """Number of coordinates sent as one bit each."""
        return int(np.count_nonzero(self.binarized_mask))

    @property
    def uplink_bits(self) -> int:
        """Bits uploaded: one per binarized coordinate, 32 per layer's alpha, 32 per fp32 coordinate."""
        binarized = self.num_binarized
        return binarized + 32 * len(self.alphas) + 32 * (self.binarized_mask.size - binarized)


class FedBatTrainer(LoopTrainer):
    """FedBAT's local training. ``rho`` >= 0 (0 fixes alpha at clamp(alpha0)), ``phi`` in [0, 1) (phi = 1 would
    never binarize), ``alpha_clamp`` = (lo, hi) with 0 < lo <= hi. The result's ``detail`` is a ``FedBatResult``."""

    name: ClassVar[str] = "fedbat"

    def __init__(self, *, rho: float = 6.0, phi: float = 0.5, alpha_clamp: tuple[float, float] = (5e-4, 5e-2)) -> None:
        check_number("rho", rho, lambda v: v >= 0, ">= 0, e.g. 6.0")
        check_number("phi", phi, lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.5 (phi = 1 never binarizes)")
        self.rho, self.phi, self.alpha_clamp = float(rho), float(phi), check_clamp(alpha_clamp)

    def train(self, task: Task, privacy: Any = None) -> LocalResult:
        if privacy is not None and privacy.config.grad_sample_mode == "ghost":
            raise ConfigurationError(
                "grad_sample_mode='ghost' is invalid here: ghost clipping needs a per-layer norm sampler, which "
                "FedBAT's BatLinear/BatConv2d layers lack; use 'functorch' or 'hooks' (per-sample gradients via "
                "torch.func)")
        return super().train(task, privacy)

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        trained, layers = bat_model(task.model, rho=self.rho, alpha_clamp=self.alpha_clamp)
        alpha0 = task.public.get("alpha0")
        public = None if alpha0 is None else check_alphas(alpha0, layers)
        words = np.random.SeedSequence([*stream, STREAM_TAG]).generate_state(2, dtype=np.uint64)
        binarizer, uploader = (torch.Generator().manual_seed(int(w)) for w in words)
        trained.train()
        h = task.hyper
        optimizer = torch.optim.SGD(trained.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        return Setup(trained, optimizer, inputs, targets, h.batch_size, stream=stream,
                     extra={"layers": layers, "public": public, "binarizer": binarizer, "uploader": uploader})

    def before_step(self, setup: Setup, step: int, total_steps: int) -> None:
        layers, public = setup.extra["layers"], setup.extra["public"]
        warmup = math.floor(self.phi * total_steps)
        if step == 0:  # a_l is unused during warm-up: keep it out of the optimizer (and any DP noise)
            for layer in layers.values():
                layer.a.requires_grad_(False)
        if step == warmup:
            for name, layer in layers.items():
                layer.start_binarizing(None if public is None else public[name])
                layer.a.requires_grad_(True)
        if step >= warmup:
            for layer in layers.values():
                layer.draw(setup.extra["binarizer"])

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        layers, uploader = setup.extra["layers"], setup.extra["uploader"]
        params = dict(setup.extra.get("plain", setup.module).named_parameters())
        chunks, raws, masks, bits, alphas = [], [], [], {}, {}
        with torch.no_grad():
            for name, param in task.model.named_parameters():  # flatten(model) order, original names
                if name in layers:
                    layer = layers[name]
                    alpha = layer.alpha().to(torch.float32)
                    u = torch.rand(layer.m.shape, generator=uploader, dtype=layer.m.dtype)
                    bits[name] = sample_bits(layer.m / alpha.to(layer.m.dtype), u).reshape(-1).to(torch.uint8).numpy()
                    alphas[name] = float(alpha)
                    chunks.append(np.float32(alphas[name]) * (2 * bits[name].astype(np.float32) - 1))
                    raws.append(layer.m.reshape(-1).float().cpu().numpy())
                else:
                    chunks.append((params[name].reshape(-1).float() - param.reshape(-1).float()).cpu().numpy())
                    raws.append(chunks[-1])
                masks.append(np.full(param.numel(), name in layers))
        detail = FedBatResult(
            delta=np.concatenate(chunks).astype(np.float32), bits=bits, alphas=alphas,
            binarized_mask=np.concatenate(masks), num_examples=len(setup.targets), loss=loss,
            raw=np.concatenate(raws).astype(np.float32),
            warmup_mean_abs={n: layer.shared.warm for n, layer in layers.items()})
        return LocalResult(detail.delta, detail.num_examples, loss, metrics={"fedbat_uplink_bits": detail.uplink_bits},
                           detail=detail)


def fedbat_local_train(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float, seed: int,
    rho: float = 6.0, phi: float = 0.5, alpha_clamp: tuple[float, float] = (5e-4, 5e-2), momentum: float = 0.0,
    weight_decay: float = 0.0, alpha0: Mapping[str, float] | None = None, config: DpSgdConfig | None = None,
    accountant_state: dict | None = None,
) -> FedBatResult:
    """One client's FedBAT local training (under DP-SGD when ``config`` is given); ``model`` is not modified.

    ``alpha0`` (name -> value, every binarized weight) replaces mean|m_l| at the end of the warm-up (the secure
    route's public step sizes; with rho = 0 alpha_l then stays exactly there). ``accountant_state``: DP-SGD's
    state from this client's previous result (``result.state["dp_sgd"]``). Raises ``ConfigurationError`` for a
    hyper-parameter out of range, bad data, or a model with nothing to binarize (or that Opacus cannot handle).
    """
    if accountant_state is not None and config is None:
        raise ConfigurationError("accountant_state continues DP-SGD: pass config= too (or drop accountant_state)")
    hyper = Hyper(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
    task = Task(model, x, y, seed, hyper, state={"dp_sgd": accountant_state} if accountant_state is not None else {},
                public={"alpha0": alpha0} if alpha0 is not None else {})
    trainer = FedBatTrainer(rho=rho, phi=phi, alpha_clamp=alpha_clamp)
    local = trainer.train(task, DpSgd(config) if config is not None else None)
    return FedBatResult(**{**local.detail.__dict__, "state": dict(local.state)})
