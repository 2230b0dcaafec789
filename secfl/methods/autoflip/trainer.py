"""Local training under AutoFLIP's mask: the client trains the compacted model (removed units are gone, so
its FLOPs really drop) and re-applies the unstructured mask before every step and at the end, so no pruned
weight regrows (DP-SGD's noise included: the wrapper's noisy step is undone at the next re-application)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from secfl.fl.params import flatten
from secfl.methods.autoflip.flops import flops_per_step
from secfl.methods.autoflip.structure import compact
from secfl.training import LocalResult, LoopTrainer, Setup, Task

__all__ = ["MaskedTrainer"]


class MaskedTrainer(LoopTrainer):
    """SGD (the client hyper-parameters) on the compacted model under ``task.public["autoflip"]`` (a ``Mask``).

    The delta is returned in the full model's coordinates (zero wherever the mask prunes); the method's hook
    sends only the kept coordinates. ``metrics["client_flops"]``: multiply-accumulates of one local step of
    the model the client really trains (``flops.flops_per_step``, forward and backward)."""

    name: ClassVar[str] = "autoflip"

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        mask = task.public["autoflip"]
        structure = compact(task.model, list(mask.keep_units))
        small = structure.model.train()
        keep = torch.from_numpy(mask.keep[structure.index].astype(np.float32))
        factors, offset = [], 0
        for param in small.parameters():
            factors.append(keep[offset:offset + param.numel()].view_as(param))
            offset += param.numel()
        _apply(small, factors)
        h = task.hyper
        optimizer = torch.optim.SGD(small.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        return Setup(small, optimizer, inputs, targets, h.batch_size, stream=stream,
                     extra={"structure": structure, "factors": factors, "start": flatten(small)})

    def before_step(self, setup: Setup, step: int, total_steps: int) -> None:
        _apply(setup.extra.get("plain", setup.module), setup.extra["factors"])

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        small = setup.extra.get("plain", setup.module)
        _apply(small, setup.extra["factors"])
        structure = setup.extra["structure"]
        delta = structure.to_full(flatten(small) - setup.extra["start"]).astype(np.float32)
        flops = flops_per_step(small, tuple(setup.inputs.shape[1:]), task.hyper.batch_size)
        return LocalResult(delta, len(setup.targets), loss, metrics={"client_flops": float(flops)})


def _apply(module: torch.nn.Module, factors: list[torch.Tensor]) -> None:
    """Zero the pruned weights in place."""
    with torch.no_grad():
        for param, factor in zip(module.parameters(), factors, strict=True):
            param.mul_(factor)
