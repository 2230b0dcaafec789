"""FedBAT with one public step size per layer, so that its bits can go through a secure sum.

FedBAT's clients each learn their own alpha_l, and alpha_l (2 b - 1) summed over clients is not a sum of
bits. Here (option (a), docs/methods/fedbat.md section 4) the server publishes alpha_l^t for every
binarized layer at the start of round t; every client trains with that fixed step size after its warm-up
(no local alpha learning) and sends x = m_l / alpha_l^t, which ``FedBatBits`` binarizes to bits and sums
securely. The server multiplies the mean sign of layer l by alpha_l^t.

The step size stays learned, federated with one round of lag (``update = "learned"``): each client
starts FedBAT's alpha learning from alpha0_l = alpha_l^t (instead of its own mean|m_l|), trains with its
learned alpha_k,l, and appends alpha_k,l to its vector as full-precision coordinates. They travel through
the same secure sum, and alpha_l^{t+1} = clamp(mean_k alpha_k,l); the server learns only group means.
The upload still binarizes m_l with the public alpha_l^t, so it is unbiased for m_l where |m_l| <= alpha_l^t
while the client's forward passes used alpha_k,l (close to it once the public alpha settles).
``update = "fixed"`` keeps alpha_l = ``alpha_init`` (clients run with rho = 0, so training and upload use
the same alpha), which a DP route needs when its noise would swamp the proposals.

Threat model: that of the secure sum and ``FedBatBits``; alpha_l^t is public. Under user-level DP
(clip + noise stages before ``FedBatBits``) the proposals are clipped and noised with the rest of the
vector, so the next alpha is post-processing of DP outputs.
"""

from __future__ import annotations
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from secfl.exceptions import ConfigurationError
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.fedbat.binarize import binarized_segments, binarized_weights
from secfl.methods.fedbat.trainer import FedBatResult
from secfl.training import LocalResult

__all__ = ["SecureFedBat", "UPDATES"]

UPDATES = ("learned", "fixed")


class SecureFedBat(RoundHook):
    """The public per-layer alphas of a run, the clients' vectors in alpha units and the server's delta.

    As a round hook it publishes the alphas before the round (``public["alpha0"]``), turns each client's
    result into its vector, and maps the aggregate back to the model's delta (moving the alphas on).

    Args:
        model: the global model (its Conv2d/Linear weights are the binarized layers).
        alpha_init: alpha_l for the first round (every layer).
        alpha_clamp: ``(lo, hi)``: the range every public alpha is kept in.
        update: ``"learned"`` (next alpha = clamp(mean of the clients' learned alphas)) or ``"fixed"``.
    """

    def __init__(self, model: torch.nn.Module, *, alpha_init: float = 0.01,
                 alpha_clamp: tuple[float, float] = (5e-4, 5e-2), update: str = "learned") -> None:
        if update not in UPDATES:
            raise ConfigurationError(f"update={update!r} is invalid; choose one of {', '.join(UPDATES)}")
        low, high = (float(v) for v in alpha_clamp)
        if not (math.isfinite(alpha_init) and low <= alpha_init <= high):
            raise ConfigurationError(f"alpha_init={alpha_init!r} must lie in the alpha clamp [{low:g}, {high:g}]")
        self.names = list(binarized_weights(model))
        self.segments = binarized_segments(model)
        self.dim = sum(p.numel() for p in model.parameters())
        self.clamp, self.update = (low, high), update
        self.alphas = np.full(len(self.names), float(np.float32(alpha_init)))
        self._used: dict[str, float] = {}

    @property
    def extra(self) -> int:
        """Coordinates appended to each client's vector: one proposal per layer with ``update = "learned"``."""
        return len(self.names) if self.update == "learned" else 0

    def public(self) -> dict[str, float]:
        """This round's public step sizes, parameter name -> alpha_l (the clients' alpha0 and upload scale)."""
        return dict(zip(self.names, (float(a) for a in self.alphas)))

    def vector(self, result: FedBatResult) -> np.ndarray:
        """[m_l / alpha_l at the binarized coordinates, the fp32 delta elsewhere, proposals]: float32."""
        if result.raw is None or result.raw.size != self.dim:
            raise ConfigurationError(f"the FedBAT result must carry its raw update of {self.dim} values")
        x = result.raw.astype(np.float64)
        for (start, stop), alpha in zip(self.segments, self.alphas):
            x[start:stop] /= alpha
        if self.extra:
            x = np.append(x, [result.alphas[name] for name in self.names])
        return x.astype(np.float32)

    def delta(self, aggregate: np.ndarray) -> np.ndarray:
        """The model delta from the aggregate of the vectors; moves the alphas to the next round's."""
        aggregate = np.asarray(aggregate, dtype=np.float64)
        if aggregate.shape != (self.dim + self.extra,):
            raise ConfigurationError(f"aggregate has shape {aggregate.shape}, expected ({self.dim + self.extra},)")
        delta = aggregate[: self.dim].copy()
        for (start, stop), alpha in zip(self.segments, self.alphas):
            delta[start:stop] *= alpha
        if self.extra:
            proposals = aggregate[self.dim:]
            finite = np.where(np.isfinite(proposals), proposals, self.alphas)
            self.alphas = np.clip(finite, *self.clamp).astype(np.float32).astype(np.float64)
        return delta

    # the round hook
    def before_round(self, ctx: RoundContext) -> None:
        self._used = self.public()
        ctx.public["alpha0"] = self._used

    def client_vector(self, ctx: RoundContext, cid: int, result: LocalResult, vector: np.ndarray) -> np.ndarray:
        return self.vector(result.detail)

    def server_delta(self, ctx: RoundContext, delta: np.ndarray) -> np.ndarray:
        return self.delta(delta)

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        row["fedbat_alphas"] = list(self._used.values())  # the alphas this round used

    def state_dict(self) -> dict[str, list[float]]:
        """What a checkpoint keeps: the next round's alphas."""
        return {"alphas": [float(a) for a in self.alphas]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        alphas = np.asarray(state["alphas"], dtype=np.float64)
        if alphas.shape != self.alphas.shape:
            raise ConfigurationError(f"checkpoint has {alphas.size} FedBAT alphas, the model {self.alphas.size}")
        self.alphas = alphas
