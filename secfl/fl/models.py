"""Small Opacus-compatible classifiers for the FL engine: an MLP, a GroupNorm CNN and logistic regression."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError

__all__ = ["MODELS", "build_model"]

MODELS: tuple[str, ...] = ("mlp", "cnn", "logreg")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "mlp": {"hidden": 128},
    "cnn": {"channels": 16, "groups": 4, "hidden": 64},
    "logreg": {},
}


def build_model(
    kind: str, *, input_shape: tuple[int, ...], num_classes: int, seed: int | None = None, **params: Any
) -> nn.Module:
    """Build a classifier mapping ``[batch, *input_shape]`` to ``[batch, num_classes]`` logits.

    Kinds and parameters:
        ``mlp``: flatten, then ``Linear -> ReLU`` per entry of ``hidden`` (int or list of ints, default
        128), then ``Linear(num_classes)``.
        ``cnn``: two blocks ``Conv2d(3x3, padding 1) -> GroupNorm(groups) -> ReLU -> MaxPool2d(2)`` with
        ``channels`` then ``2 * channels`` filters (default 16, groups 4), then
        ``Linear(hidden=64) -> ReLU -> Linear(num_classes)``. Needs ``input_shape = (c, h, w)`` with
        h, w >= 4. Uses GroupNorm, never BatchNorm, so Opacus can compute per-sample gradients.
        ``logreg``: flatten, then ``Linear(num_classes)``.

    Args:
        kind: One of ``MODELS``.
        input_shape: Shape of one example, e.g. ``(1, 28, 28)`` or ``(60,)``.
        num_classes: Number of output logits, >= 2.
        seed: If given, initialise under ``torch.manual_seed(seed)`` inside a forked RNG, leaving the
            global torch RNG untouched; otherwise use the global torch RNG.
        **params: Kind-specific parameters listed above.

    Returns:
        The model, in training mode.

    Raises:
        ConfigurationError: Unknown kind or parameter, or an invalid shape, class count, seed or parameter.
    """
    if kind not in MODELS:
        raise ConfigurationError(f"model kind={kind!r} is unknown; choose one of {', '.join(MODELS)}")
    unknown = sorted(set(params) - set(_DEFAULTS[kind]))
    if unknown:
        accepted = ", ".join(_DEFAULTS[kind]) or "none"
        raise ConfigurationError(f"model {kind!r} got unknown parameter(s) {unknown}; accepted: {accepted}")
    shape = _check_shape(input_shape)
    num_classes = check_int("num_classes", num_classes, 2)
    config = {**_DEFAULTS[kind], **params}
    if seed is None:
        return _build(kind, shape, num_classes, config)
    seed = check_int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(kind, shape, num_classes, config)


def _build(kind: str, shape: tuple[int, ...], num_classes: int, config: dict[str, Any]) -> nn.Module:
    """Construct the validated model kind."""
    features = math.prod(shape)
    if kind == "logreg":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
    if kind == "mlp":
        hidden = config["hidden"]
        widths = [hidden] if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool) else hidden
        if not isinstance(widths, list | tuple) or not widths:
            raise ConfigurationError(
                f"mlp hidden={hidden!r} is invalid; pass a positive int or a non-empty list of them"
            )
        layers: list[nn.Module] = [nn.Flatten()]
        for width in widths:
            width = check_int("mlp hidden width", width, 1)
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        return nn.Sequential(*layers, nn.Linear(features, num_classes))
    return _cnn(shape, num_classes, **config)


def _cnn(shape: tuple[int, ...], num_classes: int, *, channels: int, groups: int, hidden: int) -> nn.Module:
    """Two conv/GroupNorm/ReLU/pool blocks and a two-layer head."""
    if len(shape) != 3 or shape[1] < 4 or shape[2] < 4:
        raise ConfigurationError(
            f"cnn input_shape={shape} is invalid; it needs (channels, height, width) with height, width >= 4 "
            "(use mlp or logreg for flat inputs)"
        )
    channels = check_int("cnn channels", channels, 1)
    groups = check_int("cnn groups", groups, 1)
    hidden = check_int("cnn hidden", hidden, 1)
    if channels % groups:
        raise ConfigurationError(
            f"cnn groups={groups} does not divide channels={channels}; pick a divisor, e.g. 4 for 16"
        )
    wide = 2 * channels
    flat = wide * (shape[1] // 4) * (shape[2] // 4)
    return nn.Sequential(
        nn.Conv2d(shape[0], channels, 3, padding=1),
        nn.GroupNorm(groups, channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, wide, 3, padding=1),
        nn.GroupNorm(groups, wide),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def _check_shape(input_shape: object) -> tuple[int, ...]:
    """Return input_shape as a tuple of positive ints or raise."""
    if not isinstance(input_shape, tuple | list) or not input_shape or any(
        isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in input_shape
    ):
        raise ConfigurationError(
            f"input_shape={input_shape!r} is invalid; pass a tuple of positive ints, e.g. (1, 28, 28)"
        )
    return tuple(int(s) for s in input_shape)
