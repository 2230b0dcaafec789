"""FedAgg's distillation step (Wu et al., INFOCOM 2024): a student learns from a teacher's logits on bridge
samples, with the paper's losses.

With ``KL_T(s || t) = T^2 * KL(softmax(t / T) + 1e-7 || softmax(s / T))`` (batch mean):

- a non-leaf student (edge, cloud): ``L = CE(s(x~), y~) + alpha_nl * KL_T(s(x~) || t(x~))`` (alpha_nl = 10);
- a leaf student (device): ``L = CE(s(x~), y~) + alpha_l * KL_T(s(x~) || t(x~)) + alpha_2 * CE(s(x), y)``, x a
  batch of its private data (alpha_l = alpha_2 = 1).

Bridge labels y~ are dropped from the loss when ``labels`` is False. The optimizer (SGD with momentum) is
created afresh for every call, as in the paper's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from secfl.methods.fedagg.bridges import Pool

__all__ = ["Losses", "kd_loss", "distill", "logits_of"]


@dataclass(frozen=True)
class Losses:
    """The weights and optimizer of one distillation call."""

    alpha: float
    temperature: float
    lr: float
    momentum: float
    batch_size: int
    labels: bool = True
    alpha_private: float = 0.0
    weight_decay: float = 0.0


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) + 1e-7 || softmax(student / T))``, mean over the batch."""
    target = functional.softmax(teacher / temperature, dim=1) + 1e-7
    log_student = functional.log_softmax(student / temperature, dim=1)
    return temperature ** 2 * (target * (target.log() - log_student)).sum(dim=1).mean()


@torch.no_grad()
def logits_of(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """float32 logits ``[n, classes]`` of ``model`` on ``x``."""
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch], dtype=np.float32))).numpy()
           for i in range(0, len(x), batch)]
    model.train()
    return np.concatenate(out).astype(np.float32)


def distill(model: nn.Module, bridge: Pool, teacher: np.ndarray, losses: Losses, *, rng: np.random.Generator,
            epochs: int = 1, private: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Train ``model`` in place towards ``teacher`` (``[n, classes]`` logits on ``bridge.x``); return the mean loss.

    Without ``private``: ``epochs`` passes over the bridge batches. With ``private = (x, y)`` (a leaf):
    ``epochs`` passes over the private batches, each paired with the next bridge batch (cycling).
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=losses.lr, momentum=losses.momentum,
                                weight_decay=losses.weight_decay)
    b = losses.batch_size
    n_bridge = len(bridge.y)
    steps_per_epoch = math.ceil((len(private[1]) if private is not None else n_bridge) / b)
    x_b, y_b = torch.from_numpy(bridge.x), torch.from_numpy(bridge.y)
    t_b = torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32))
    order, cursor, total, count = rng.permutation(n_bridge), 0, 0.0, 0
    model.train()
    for _ in range(epochs):
        private_order = rng.permutation(len(private[1])) if private is not None else None
        for step in range(steps_per_epoch):
            if cursor >= n_bridge:
                order, cursor = rng.permutation(n_bridge), 0
            pick = torch.from_numpy(order[cursor:cursor + b])
            cursor += b
            student = model(x_b[pick])
            loss = losses.alpha * kd_loss(student, t_b[pick], losses.temperature)
            if losses.labels:
                loss = loss + functional.cross_entropy(student, y_b[pick])
            if private_order is not None:
                own = private_order[step * b:(step + 1) * b]
                x_p = torch.from_numpy(np.ascontiguousarray(private[0][own], dtype=np.float32))
                loss = loss + losses.alpha_private * functional.cross_entropy(model(x_p),
                                                                               torch.from_numpy(private[1][own]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
    return total / max(count, 1)
