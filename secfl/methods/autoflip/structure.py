"""Structured pruning that really removes hidden units from a ``torch.nn.Sequential`` (AutoFLIP's model surgery).

A *unit group* is the output units of a ``Linear`` or the filters of a ``Conv2d`` read by a later
``Linear``/``Conv2d`` (the *consumer*): the model's outputs and the first layer's inputs are never pruned.
A unit owns, in ``flatten(model)`` order: its incoming weight row/filter, its bias, its ``GroupNorm``
weight/bias channel and the consumer's input slice (a column of the next ``Linear``; after ``Flatten`` a
conv channel's ``h*w`` consecutive columns; the next ``Conv2d``'s input channel). A weight joining two
hidden units belongs to a unit of each group; units of one group never share a coordinate.

GroupNorm choice: pruning is done in whole GroupNorm groups. A norm group's mean and variance mix its
channels, so removing some channels of a group (keeping ``num_groups``, or changing it) changes every
surviving channel's output; removing whole groups keeps the others bit-for-bit. ``compact`` therefore
keeps a norm group iff at least half of its channels are asked to be kept (if none qualifies, the group
with the most kept channels, first on ties), and keeps every channel of each kept group; the new layer has
``num_groups`` = kept groups with the same channels per group. The effective masks are ``Compact.keep_units``.
With this choice the compact model computes exactly what the full model computes once every removed
unit's coordinates are zeroed (``to_full(from_full(flatten(model)))`` written back), up to float rounding.

Supported: ``Linear``, ``Conv2d`` (``groups=1``), ``GroupNorm`` and the parameter-free ``PASSTHROUGH`` layers,
i.e. what ``secfl.fl.models`` builds (mlp, cnn, logreg). Anything else (BatchNorm...) raises ``ConfigurationError``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from secfl.exceptions import ConfigurationError

__all__ = ["PASSTHROUGH", "UnitGroup", "Compact", "prunable_units", "unit_scores", "compact"]

_ELEMENTWISE: tuple[type[nn.Module], ...] = (nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU,
                                              nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus, nn.Hardtanh, nn.Dropout,
                                              nn.AlphaDropout)
_POOLING: tuple[type[nn.Module], ...] = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASSTHROUGH: tuple[type[nn.Module], ...] = (*_ELEMENTWISE, *_POOLING, nn.Flatten)
"""Parameter-free layers that never mix units: they may sit between a unit group and its consumer."""


@dataclass(frozen=True)
class UnitGroup:
    """The prunable hidden units of one layer (``layer``, ``consumer``, ``norm``: indices in the Sequential).

    Attributes:
        layer: The producing ``Linear``/``Conv2d``; ``consumer``: the next ``Linear``/``Conv2d``.
        norm: The ``GroupNorm`` over these units, or None; ``norm_groups``: its ``num_groups`` (else 1).
        block: Consumer input columns per unit (``h*w`` after ``Flatten`` of a conv, else 1).
        incoming: int64 ``[size, fan_in]``: flat coordinates of each unit's incoming weights.
        coords: int64 ``[size, m]``: every flat coordinate of each unit (incoming weights, bias, norm
            weight/bias, consumer input slice), sorted per unit.
    """

    layer: int
    consumer: int
    norm: int | None
    norm_groups: int
    block: int
    incoming: np.ndarray
    coords: np.ndarray

    @property
    def size(self) -> int:
        """The number of units."""
        return int(self.incoming.shape[0])


@dataclass(frozen=True)
class Compact:
    """A compacted model and the map between its flat vector and the full model's.

    Attributes:
        model: A new, smaller Sequential holding the kept units only (weights copied from the full model).
        index: int64, strictly increasing: for each coordinate of ``flatten(model)``, its full coordinate.
        keep_units: The masks really applied (after GroupNorm rounding), one per unit group.
        full_size: ``num_params`` of the full model.
    """

    model: nn.Sequential
    index: np.ndarray
    keep_units: tuple[np.ndarray, ...]
    full_size: int

    def to_full(self, vector: np.ndarray) -> np.ndarray:
        """Scatter a compact vector into a new full-length vector (zeros at removed coordinates)."""
        vector = _vector("compact vector", vector, self.index.size)
        out = np.zeros(self.full_size, dtype=vector.dtype)
        out[self.index] = vector
        return out

    def from_full(self, vector: np.ndarray) -> np.ndarray:
        """Gather the kept coordinates of a full-length vector (a new array)."""
        return _vector("full vector", vector, self.full_size)[self.index].copy()


def prunable_units(model: nn.Module) -> list[UnitGroup]:
    """Every hidden unit group of ``model``, in layer order; ConfigurationError if unsupported (module docstring)."""
    return _parse(model)[0]


def unit_scores(model: nn.Module, scores: np.ndarray) -> list[np.ndarray]:
    """Per unit group, the mean of ``scores`` (flat, ``flatten(model)`` order) over each unit's incoming weights.

    Raises ``ConfigurationError`` for an unsupported model or ``scores`` not a vector of ``num_params(model)``.
    """
    groups, _, _, d = _parse(model)
    scores = np.asarray(scores)
    if scores.shape != (d,) or scores.dtype.kind not in "fiu":
        raise ConfigurationError(f"scores has shape {scores.shape} ({scores.dtype}); pass a numeric vector of {d}")
    return [scores[g.incoming].astype(np.float64).mean(axis=1) for g in groups]


def compact(model: nn.Module, keep: list[np.ndarray]) -> Compact:
    """Build a smaller Sequential holding only the kept units (and every parameter of non-pruned layers).

    Args:
        model: A supported Sequential (left untouched).
        keep: One bool array per ``prunable_units(model)`` group, True for the units to keep; each must keep
            at least one unit. GroupNorm groups are kept or removed whole (module docstring).

    Returns:
        The ``Compact`` (model in the same training mode, parameters with the same dtype and device).

    Raises:
        ConfigurationError: Unsupported model; wrong number of masks; a mask not bool, of the wrong length or empty.
    """
    groups, layers, offsets, d = _parse(model)
    kept = [np.flatnonzero(m) for m in _effective(groups, keep)]
    produced = {g.layer: i for i, g in enumerate(groups)}
    consumed = {g.consumer: i for i, g in enumerate(groups)}
    normed = {g.norm: i for i, g in enumerate(groups) if g.norm is not None}
    new_layers, index = [], []
    for i, layer in enumerate(layers):
        if i in normed:
            rows, cols = kept[normed[i]], None
        elif i in produced or i in consumed:
            rows = kept[produced[i]] if i in produced else np.arange(layer.weight.shape[0])
            g = groups[consumed[i]] if i in consumed else None
            cols = np.arange(layer.weight.shape[1]) if g is None else (
                kept[consumed[i]][:, None] * g.block + np.arange(g.block)).reshape(-1)
        else:  # not touched by pruning: copied whole
            new_layers.append(copy.deepcopy(layer))
            index += [offsets[(i, name)] + np.arange(p.numel()) for name, p in layer.named_parameters()]
            continue
        new = _rebuild(layer, rows.size, None if cols is None else cols.size)
        with torch.no_grad():
            for name, param in layer.named_parameters():
                grid = np.ix_(rows, cols) if name == "weight" and cols is not None else np.ix_(rows)
                getattr(new, name).copy_(param[tuple(torch.from_numpy(s) for s in grid)])
                index.append((offsets[(i, name)] + np.arange(param.numel())).reshape(param.shape)[grid].reshape(-1))
        new_layers.append(new)
    small = nn.Sequential(*new_layers).train(model.training)
    flat_index = np.concatenate(index).astype(np.int64) if index else np.zeros(0, dtype=np.int64)
    return Compact(small, flat_index, tuple(np.isin(np.arange(g.size), k) for g, k in zip(groups, kept)), d)


def _effective(groups: list[UnitGroup], keep: object) -> list[np.ndarray]:
    """Validate the keep masks and round them to whole GroupNorm groups."""
    if not isinstance(keep, (list, tuple)) or len(keep) != len(groups):
        got = len(keep) if isinstance(keep, (list, tuple)) else type(keep).__name__
        raise ConfigurationError(f"keep has {got} mask(s) but the model has {len(groups)} prunable unit group(s); "
                                 "pass one bool array per prunable_units(model) group")
    out = []
    for n, (g, mask) in enumerate(zip(groups, keep)):
        mask = np.asarray(mask)
        if mask.shape != (g.size,) or mask.dtype != bool:
            raise ConfigurationError(f"keep[{n}] is a {mask.dtype} array of shape {mask.shape}; unit group {n} "
                                     f"(layer {g.layer}) needs a bool array of shape ({g.size},)")
        if not mask.any():
            raise ConfigurationError(f"keep[{n}] keeps no unit of layer {g.layer}; keep at least one unit per group")
        if g.norm is not None:  # whole norm groups: kept iff at least half their channels are
            counts = mask.reshape(g.norm_groups, -1).sum(axis=1)
            alive = 2 * counts >= g.size // g.norm_groups
            if not alive.any():
                alive[int(np.argmax(counts))] = True
            mask = np.repeat(alive, g.size // g.norm_groups)
        out.append(mask.copy())
    return out


def _parse(model: nn.Module) -> tuple[list[UnitGroup], list[nn.Module], dict[tuple[int, str], int], int]:
    """Check ``model`` and find its unit groups, layers, parameter offsets and parameter count."""
    if not isinstance(model, nn.Sequential):
        raise ConfigurationError(f"model is a {type(model).__name__}; structured pruning needs a torch.nn.Sequential "
                                 "of Linear, Conv2d, GroupNorm and parameter-free layers (build_model's models)")
    layers = list(model)
    if len({id(m) for m in layers}) != len(layers):
        raise ConfigurationError("model repeats a module instance; structured pruning needs distinct layers")
    for i, layer in enumerate(layers):
        _check_layer(i, layer)
    offsets, offset = {}, 0
    position = {name: i for i, (name, _) in enumerate(model.named_children())}
    for full_name, param in model.named_parameters():
        owner, name = full_name.split(".", 1)
        offsets[(position[owner], name)] = offset
        offset += param.numel()
    expected = sum(1 for layer in layers for _ in layer.named_parameters())
    if len(offsets) != expected:
        raise ConfigurationError("model shares parameters between layers; structured pruning needs distinct ones")
    groups: list[UnitGroup] = []
    pending: dict | None = None  # the last producer, waiting for its consumer
    for i, layer in enumerate(layers):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            if pending is not None:
                groups.append(_group(pending, i, layer, offsets))
            pending = {"layer": i, "module": layer, "norm": None, "flat": False}
        elif pending is None:
            continue
        elif isinstance(layer, nn.GroupNorm):
            units = pending["module"].weight.shape[0]
            if pending["norm"] is not None or pending["flat"] or layer.num_channels != units:
                raise ConfigurationError(f"layer {i} (GroupNorm over {layer.num_channels} channels) does not normalise "
                                         f"the {units} units of layer {pending['layer']} once, before Flatten")
            pending["norm"], pending["norm_groups"] = i, layer.num_groups
        elif isinstance(layer, nn.Flatten):
            if (layer.start_dim, layer.end_dim) != (1, -1):
                raise ConfigurationError(f"layer {i} is Flatten({layer.start_dim}, {layer.end_dim}); use Flatten()")
            pending["flat"] = pending["flat"] or isinstance(pending["module"], nn.Conv2d)
        elif isinstance(layer, _POOLING) and not (isinstance(pending["module"], nn.Conv2d) and not pending["flat"]):
            raise ConfigurationError(f"layer {i} ({type(layer).__name__}) pools non-spatial units")
    return groups, layers, offsets, offset


def _check_layer(i: int, layer: nn.Module) -> None:
    """Raise unless ``layer`` is a supported layer type."""
    native = type(layer).__module__.startswith("torch.nn.")  # a subclass may change what forward computes
    if native and isinstance(layer, (nn.Linear, nn.GroupNorm, *PASSTHROUGH)):
        return
    if native and isinstance(layer, nn.Conv2d) and layer.groups == 1:
        return
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        hint = "BatchNorm is not supported (its running statistics mix clients and units); use GroupNorm"
    elif isinstance(layer, nn.Conv2d):
        hint = f"Conv2d with groups={layer.groups} is not supported; use groups=1"
    else:
        hint = "supported: Linear, Conv2d, GroupNorm and " + ", ".join(t.__name__ for t in PASSTHROUGH)
    raise ConfigurationError(f"layer {i} ({type(layer).__name__}) cannot be pruned structurally: {hint}")


def _group(pending: dict, consumer: int, layer: nn.Module, offsets: dict[tuple[int, str], int]) -> UnitGroup:
    """The unit group of ``pending``'s producer, read by ``layer`` (index ``consumer``)."""
    producer, p = pending["module"], pending["layer"]
    size = producer.weight.shape[0]
    fan_in = producer.weight[0].numel()
    spatial_in = isinstance(producer, nn.Conv2d) and not pending["flat"]
    if isinstance(layer, nn.Conv2d) != spatial_in:
        raise ConfigurationError(f"layer {consumer} ({type(layer).__name__}) reads layer {p} "
                                 + ("without Flatten in between" if spatial_in else "after Flatten or a Linear"))
    width = layer.weight.shape[1]
    block = width // size if pending["flat"] else 1
    if block * size != width or (isinstance(producer, nn.Linear) and width != size):
        raise ConfigurationError(f"layer {consumer} expects {width} inputs but layer {p} gives {size} units"
                                 + (" (per-unit blocks after Flatten must divide it)" if pending["flat"] else ""))
    units = np.arange(size)
    incoming = offsets[(p, "weight")] + units[:, None] * fan_in + np.arange(fan_in)
    parts = [incoming]
    if producer.bias is not None:
        parts.append(offsets[(p, "bias")] + units[:, None])
    norm, norm_groups = pending["norm"], 1
    if norm is not None:
        norm_groups = pending["norm_groups"]
        for name in ("weight", "bias"):
            if (norm, name) in offsets:
                parts.append(offsets[(norm, name)] + units[:, None])
    kernel = layer.weight[0, 0].numel()  # 1 for Linear
    out_rows = np.arange(layer.weight.shape[0])[:, None] * (width * kernel)
    cols = (units[:, None] * block + np.arange(block))[:, :, None] * kernel + np.arange(kernel)
    outgoing = offsets[(consumer, "weight")] + out_rows[None, :, :] + cols.reshape(size, 1, -1)
    parts.append(outgoing.reshape(size, -1))
    coords = np.sort(np.concatenate(parts, axis=1), axis=1).astype(np.int64)
    return UnitGroup(p, consumer, norm, norm_groups, block, incoming.astype(np.int64), coords)


def _vector(name: str, vector: object, size: int) -> np.ndarray:
    """Return ``vector`` as a 1-D numeric array of length ``size`` or raise."""
    array = np.asarray(vector)
    if array.shape != (size,) or array.dtype.kind not in "fiu":
        raise ConfigurationError(f"{name} has shape {array.shape} ({array.dtype}); pass a numeric vector of {size}")
    return array


def _rebuild(layer: nn.Module, rows: int, cols: int | None) -> nn.Module:
    """A fresh layer like ``layer`` with ``rows`` outputs (channels for GroupNorm) and ``cols`` inputs."""
    like = next(({"device": p.device, "dtype": p.dtype} for p in layer.parameters()), {})
    if isinstance(layer, nn.GroupNorm):
        new = nn.GroupNorm(rows // (layer.num_channels // layer.num_groups), rows, eps=layer.eps,
                           affine=layer.affine, **like)
        if layer.bias is None and new.bias is not None:  # GroupNorm(..., bias=False), where torch has it
            new.register_parameter("bias", None)
        return new
    if isinstance(layer, nn.Linear):
        return nn.Linear(cols, rows, bias=layer.bias is not None, **like)
    return nn.Conv2d(cols, rows, layer.kernel_size, stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                     bias=layer.bias is not None, padding_mode=layer.padding_mode, **like)
