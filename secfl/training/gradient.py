"""The distributed-SGD client (as in ByzFL; Karimireddy, He, Jaggi ICLR'22): one gradient with worker momentum.

Each round client i draws ``batch_size`` of its examples, computes g_i at the current global model (plus
``weight_decay`` * w), updates its momentum m_i <- beta m_i + (1 - beta) g_i (m_i = g_i in its first round) and
sends -lr * m_i as its "delta", so that the server's step with lr 1 on the aggregate is w <- w - lr agg(m).
The momentum is the client's state across rounds (``LocalResult.state["momentum"]``, checkpointed).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional

from secfl.checks import check_int
from secfl.exceptions import ConfigurationError
from secfl.fl.params import flatten
from secfl.training.trainer import LocalResult, Task, tensors

__all__ = ["GradientTrainer"]


class GradientTrainer:
    """One minibatch gradient per round with worker momentum (``hyper.momentum`` is beta); no DP-SGD."""

    name: ClassVar[str] = "gradient"
    supports_dp: ClassVar[bool] = False

    def train(self, task: Task, privacy: Any = None) -> LocalResult:
        if privacy is not None:
            raise ConfigurationError("the gradient trainer takes one step per round; DP-SGD does not wrap it")
        inputs, targets = tensors(task.x, task.y)
        h, seed = task.hyper, check_int("seed", task.seed, 0)
        if seed >= 2**64:
            raise ConfigurationError(f"seed={seed!r} is invalid; pass an integer in [0, 2**64)")
        model = task.model
        batch = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))[:h.batch_size]
        model.zero_grad(set_to_none=True)
        was_training = model.training
        model.train()
        loss = functional.cross_entropy(model(inputs[batch]), targets[batch])
        loss.backward()
        model.train(was_training)
        grad = np.concatenate([p.grad.detach().reshape(-1).numpy() for p in model.parameters()]).astype(np.float64)
        model.zero_grad(set_to_none=True)
        if h.weight_decay:
            grad += h.weight_decay * flatten(model).astype(np.float64)
        buffer = task.state.get("momentum")
        m = grad if buffer is None else h.momentum * np.asarray(buffer, dtype=np.float32) + (1.0 - h.momentum) * grad
        m = m.astype(np.float32)
        return LocalResult(delta=(-h.lr * m).astype(np.float32), num_examples=len(targets), loss=float(loss.item()),
                           loss_examples=min(len(targets), h.batch_size), state={"momentum": torch.from_numpy(m)})
