"""FedBAT's stochastic binarizer B(m; alpha) and the helpers that find the binarized weights of a model.

Element-wise, with x = m / alpha and u ~ U[0, 1): b = clamp(floor((x + 1) / 2 + u), 0, 1) and
B = alpha (2b - 1). For |m| <= alpha, P(B = +alpha) = (1 + x) / 2, so E[B] = m; beyond, B = alpha sign(m).
Backward, with g = dL/dB: dL/dm = g * 1[|x| <= 1] (clipped straight-through estimator) and
dL/dalpha = sum_i g_i c_i, c_i = +1 if x_i > 1, -1 if x_i < -1, else (2 b_i - 1) - x_i.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
import torch

from secfl.exceptions import ConfigurationError

__all__ = ["BINARIZED_MODULES", "binarize", "binarized_segments", "binarized_weights"]

#: Module types whose ``weight`` is trained and uploaded in binarized form.
BINARIZED_MODULES: tuple[type[torch.nn.Module], ...] = (torch.nn.Conv2d, torch.nn.Linear)

#: Domain-separation tag of the binarizer generators (training, upload) derived from a trainer's stream.
STREAM_TAG = 0xFEDBA7


def sample_bits(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """b = clamp(floor((x + 1) / 2 + u), 0, 1) as a float tensor of zeros and ones (x = m / alpha)."""
    return torch.clamp(torch.floor((x + 1) / 2 + u), 0, 1)


class Binarize(torch.autograd.Function):
    """B(m; alpha) = alpha (2b - 1) with the gradients above, in the form torch.func transforms (vmap, grad) accept."""

    generate_vmap_rule = True

    @staticmethod
    def forward(m: torch.Tensor, alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return alpha * (2 * sample_bits(m / alpha, u) - 1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        m, alpha, _ = inputs
        ctx.save_for_backward(m, alpha, output)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        m, alpha, output = ctx.saved_tensors
        x = m / alpha
        c = torch.where(x > 1, 1.0, torch.where(x < -1, -1.0, torch.sign(output) - x))  # sign(B) = 2b - 1
        return g * (x.abs() <= 1).to(g.dtype), (g * c).sum().reshape(alpha.shape), None


def binarize(m: torch.Tensor, alpha: torch.Tensor | float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastically binarize ``m`` to ``{-alpha, +alpha}`` (differentiable in ``m`` and ``alpha``; see above).

    Args:
        m: A floating-point tensor (any shape).
        alpha: The positive, finite step size: a one-element tensor (one scalar per layer) or a number.
        generator: Source of the uniforms ``u``; torch's global generator if None.

    Raises:
        ConfigurationError: ``m`` is not a floating tensor, ``alpha`` is not a positive finite scalar, or
            ``generator`` is not a ``torch.Generator``.
    """
    if not isinstance(m, torch.Tensor) or not m.is_floating_point():
        raise ConfigurationError(f"m is a {type(m).__name__}; pass a floating-point torch.Tensor")
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        alpha = torch.tensor(float(alpha), dtype=m.dtype, device=m.device)
    if not isinstance(alpha, torch.Tensor) or alpha.numel() != 1 or not alpha.is_floating_point():
        raise ConfigurationError(f"alpha={alpha!r} is invalid; pass a one-element floating tensor (or a number)")
    value = float(alpha.detach())
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"alpha={value!r} is invalid; pass a finite alpha > 0")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigurationError(f"generator is a {type(generator).__name__}; pass a torch.Generator or None")
    u = torch.rand(m.shape, generator=generator, dtype=m.dtype, device=m.device)
    return Binarize.apply(m, alpha.reshape(()), u)


def binarized_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Parameter name -> weight of every Conv2d/Linear module, in ``named_parameters`` order (ties once)."""
    wanted = {id(module.weight) for module in model.modules() if isinstance(module, BINARIZED_MODULES)}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


def binarized_segments(model: torch.nn.Module) -> list[tuple[int, int]]:
    """``[start, stop)`` of every binarized weight in ``flatten(model)`` order (what FedBAT sends as bits)."""
    wanted, segments, offset = binarized_weights(model), [], 0
    for name, param in model.named_parameters():
        if name in wanted:
            segments.append((offset, offset + param.numel()))
        offset += param.numel()
    return segments


def check_alphas(alphas: object, names: Mapping[str, object]) -> dict[str, float]:
    """Given alpha0 values as name -> float, one finite positive value per binarized weight, or raise."""
    if not isinstance(alphas, Mapping) or set(alphas) != set(names):
        raise ConfigurationError(f"alpha0 must map every binarized weight ({', '.join(names)}) to a step size")
    out = {}
    for name, value in alphas.items():
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise ConfigurationError(f"alpha0[{name!r}] = {value!r} is invalid; pass a finite alpha > 0")
        out[name] = float(np.float32(value))
    return out


def check_clamp(alpha_clamp: object) -> tuple[float, float]:
    """Return alpha_clamp as (lo, hi) floats with 0 < lo <= hi, or raise."""
    ok = (
        isinstance(alpha_clamp, tuple | list)
        and len(alpha_clamp) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in alpha_clamp)
        and 0 < alpha_clamp[0] <= alpha_clamp[1]
    )
    if not ok:
        raise ConfigurationError(
            f"alpha_clamp={alpha_clamp!r} is invalid; pass (lo, hi) with finite 0 < lo <= hi, e.g. (5e-4, 5e-2)"
        )
    return float(alpha_clamp[0]), float(alpha_clamp[1])
