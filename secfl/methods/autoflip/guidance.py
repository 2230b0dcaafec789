"""AutoFLIP's guidance matrix and masks: from the explorers' summed squared deviations to a binary mask.

G is the mean over explorers of D_k = (theta_k - theta_b)^2 (shape of the flat parameter vector). Per
tensor it is min-max normalised to [0, 1] (a constant tensor normalises to 0). The global threshold tau
is the q-quantile of all normalised scores: coordinates at or below it are pruned (low deviation on every
explorer's loss landscape means unimportant), so about a fraction q of all parameters go.

The hybrid step (the paper's intent; its public code has only the unstructured part) first removes whole
hidden units: a unit's score is the mean normalised score of its incoming weights. Under a GroupNorm only a
whole norm group can go (its statistics mix the group's channels), scored by its units' mean. Blocks (units,
or norm groups) at or below the ``q_structured``-quantile of all block scores are removed, lowest first while
they fit in the budget q, with their bias, norm channels and the next layer's input slice
(``structure.compact``); output units never are. The unstructured threshold is then
chosen inside the surviving units so that the total sparsity (removed units' coordinates included) is
about q.

Random pruning (the baseline) keeps the same number of coordinates, drawn uniformly, with the same
structured step applied to random unit scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from secfl.exceptions import ConfigurationError
from secfl.methods.autoflip.structure import compact, prunable_units, unit_scores

__all__ = ["Mask", "normalized_scores", "hybrid_mask", "random_scores"]


@dataclass(frozen=True)
class Mask:
    """A public pruning decision over the flat parameter vector of ``d`` coordinates.

    Attributes:
        keep_units: per prunable unit group (``structure.prunable_units`` order), bool per unit.
        keep: bool ``[d]``: the coordinates that train and travel (False inside removed units too).
    """

    keep_units: tuple[np.ndarray, ...]
    keep: np.ndarray

    @property
    def sparsity(self) -> float:
        """The fraction of coordinates pruned."""
        return 1.0 - float(np.count_nonzero(self.keep)) / self.keep.size

    def state_dict(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        return {"keep": torch.from_numpy(self.keep.copy()),
                "units": [torch.from_numpy(u.copy()) for u in self.keep_units]}

    @classmethod
    def from_state(cls, state: dict) -> Mask:
        return cls(tuple(np.asarray(u.numpy(), dtype=bool) for u in state["units"]),
                   np.asarray(state["keep"].numpy(), dtype=bool))


def normalized_scores(model: torch.nn.Module, guidance: np.ndarray) -> np.ndarray:
    """Per-tensor min-max normalisation of ``guidance`` (flat, ``flatten(model)`` order) to [0, 1]."""
    guidance = np.asarray(guidance, dtype=np.float64)
    d = sum(p.numel() for p in model.parameters())
    if guidance.shape != (d,) or not np.all(np.isfinite(guidance)):
        raise ConfigurationError(f"guidance has shape {guidance.shape}; pass a finite vector of {d} values")
    out, offset = np.zeros(d), 0
    for _, param in model.named_parameters():
        chunk = guidance[offset:offset + param.numel()]
        low, high = chunk.min(), chunk.max()
        out[offset:offset + param.numel()] = (chunk - low) / (high - low) if high > low else 0.0
        offset += param.numel()
    return out


def random_scores(model: torch.nn.Module, rng: np.random.Generator) -> np.ndarray:
    """Uniform scores: the random-pruning baseline at the same ratio."""
    return rng.random(sum(p.numel() for p in model.parameters()))


def hybrid_mask(model: torch.nn.Module, scores: np.ndarray, *, q: float, q_structured: float = 0.0) -> Mask:
    """The mask pruning about a fraction ``q`` of all coordinates: first whole blocks (units, or GroupNorm
    groups) at or below the ``q_structured``-quantile of block scores, lowest first while they fit in the
    budget q, then the lowest scores inside the surviving units.

    Raises:
        ConfigurationError: q or q_structured outside [0, 1), or scores of the wrong shape.
    """
    for name, value in (("q", q), ("q_structured", q_structured)):
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ConfigurationError(f"{name}={value!r}: pass a fraction in [0, 1)")
    scores = np.asarray(scores, dtype=np.float64)
    d = scores.size
    groups, per_unit = prunable_units(model), unit_scores(model, scores)
    keep_units = [np.ones(len(s), dtype=bool) for s in per_unit]
    if q_structured > 0 and per_unit:
        blocks = _blocks(groups, per_unit)
        threshold = np.quantile([score for score, _, _ in blocks], q_structured)
        budget = q * d  # whole units go, lowest score first, while they fit in the pruning budget
        for _, g, units in sorted(b for b in blocks if b[0] <= threshold):
            size = groups[g].coords.shape[1] * len(units)
            if size > budget or keep_units[g].sum() <= len(units):  # every group keeps at least one unit
                continue
            keep_units[g][list(units)], budget = False, budget - size
    structure = compact(model, keep_units)
    alive = np.zeros(d, dtype=bool)
    alive[structure.index] = True
    target = int(round((1.0 - q) * d))  # coordinates to keep in total
    inside = np.flatnonzero(alive)
    if target >= inside.size:
        keep = alive
    else:
        order = inside[np.argsort(-scores[inside], kind="stable")]  # highest scores first; ties by position
        keep = np.zeros(d, dtype=bool)
        keep[order[:max(target, 1)]] = True
    return Mask(tuple(np.asarray(k, dtype=bool) for k in structure.keep_units), keep)


def _blocks(groups: list, per_unit: list[np.ndarray]) -> list[tuple[float, int, tuple[int, ...]]]:
    """What can be removed, with its score: single units, or, under a GroupNorm, whole norm groups (a
    GroupNorm's statistics mix the channels of a group, so only whole groups can go; a group's score is the
    mean of its units'). ``q_structured`` is a quantile over these blocks."""
    out = []
    for g, (group, scores) in enumerate(zip(groups, per_unit, strict=True)):
        width = group.size // group.norm_groups if group.norm is not None else 1
        for start in range(0, group.size, width):
            units = tuple(range(start, start + width))
            out.append((float(np.mean(scores[list(units)])), g, units))
    return out
