"""Counting the multiply-accumulates of one local training step from a model's actual layers (not from a mask).

Convention: only the weight multiply-accumulates (MACs) of ``Linear`` (``in * out`` per output position)
and ``Conv2d`` (``out_c * in_c/groups * kh * kw * H_out * W_out``) are counted; biases, GroupNorm,
activations and pooling (a few element operations per activation, below 1% for these models) are not.
A training step costs 3x the forward pass (forward, then the backward's gradient with respect to the
inputs and with respect to the weights, each as many MACs as the forward), times the batch size. A
compacted model (``structure.compact``) has smaller layers, so it counts fewer MACs.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from secfl.exceptions import ConfigurationError
from secfl.methods.autoflip.structure import PASSTHROUGH

__all__ = ["forward_macs", "flops_per_step"]

_SHAPE_ONLY = (nn.Dropout, nn.AlphaDropout, nn.Identity)  # shape-preserving; skipped so no RNG is consumed


def forward_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of the forward pass of ``model`` on ONE example of shape ``input_shape``.

    Shapes are propagated by running each layer on a zero tensor of batch 1 (no gradient, no RNG use).

    Raises:
        ConfigurationError: ``model`` is not a Sequential of Linear, Conv2d, GroupNorm and the parameter-free
            ``structure.PASSTHROUGH`` layers, or ``input_shape`` does not fit it.
    """
    if not isinstance(model, nn.Sequential):
        raise ConfigurationError(
            f"model is a {type(model).__name__}; flops counting needs a torch.nn.Sequential (build_model's models)"
        )
    shape = _shape(input_shape)
    param = next(model.parameters(), None)
    x = torch.zeros((1, *shape), dtype=param.dtype if param is not None else torch.float32,
                    device=param.device if param is not None else "cpu")
    macs = 0
    with torch.no_grad():
        for i, layer in enumerate(model):
            if not isinstance(layer, (nn.Linear, nn.Conv2d, nn.GroupNorm, *PASSTHROUGH)):
                raise ConfigurationError(
                    f"layer {i} ({type(layer).__name__}) has no FLOPs rule; supported: Linear, Conv2d, "
                    "GroupNorm and " + ", ".join(t.__name__ for t in PASSTHROUGH)
                )
            if isinstance(layer, _SHAPE_ONLY):
                continue
            try:
                y = layer(x)
            except RuntimeError as error:
                raise ConfigurationError(
                    f"input_shape={shape} does not fit the model: layer {i} ({type(layer).__name__}) cannot take "
                    f"an input of shape {tuple(x.shape[1:])} ({error})"
                ) from None
            if isinstance(layer, nn.Linear):
                macs += layer.in_features * y.numel()
            elif isinstance(layer, nn.Conv2d):
                macs += layer.weight[0].numel() * y.numel()  # (in_c / groups) * kh * kw per output value
            x = y
    return int(macs)


def flops_per_step(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> int:
    """Multiply-accumulates of one training step: ``3 * batch_size * forward_macs(model, input_shape)``.

    Args:
        model: A Sequential (the full model or a compacted one).
        input_shape: The shape of one example, e.g. ``(1, 28, 28)``.
        batch_size: Examples per step, >= 1.

    Raises:
        ConfigurationError: An unsupported model, a bad ``input_shape`` or a non-positive ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ConfigurationError(f"batch_size={batch_size!r} is invalid; pass a positive int")
    return 3 * int(batch_size) * forward_macs(model, input_shape)


def _shape(input_shape: object) -> tuple[int, ...]:
    """Return ``input_shape`` as a tuple of positive ints or raise."""
    if not isinstance(input_shape, (tuple, list)) or not input_shape or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in input_shape
    ):
        raise ConfigurationError(f"input_shape={input_shape!r} is invalid; pass a tuple of positive ints, "
                                 "e.g. (1, 28, 28)")
    return tuple(int(s) for s in input_shape)
