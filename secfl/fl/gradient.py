"""The distributed-SGD client (ByzFL; Karimireddy, He, Jaggi ICLR'22): one minibatch gradient with worker momentum.

Each round client i draws ``batch_size`` of its examples, computes g_i at the current global model (plus
``weight_decay`` * w), updates its momentum m_i <- beta m_i + (1 - beta) g_i (m_i = g_i in its first round) and
sends -lr * m_i as its "delta", so that the server's step with lr 1 on the aggregate is w <- w - lr agg(m).
The momentum is the client's state across rounds (kept in the engine's checkpoint).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from secfl.checks import check_int, check_number
from secfl.fl.client import _tensors
from secfl.fl.params import flatten


def gradient_step(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int, lr: float, seed: int,
                  momentum: float, buffer: np.ndarray | None, weight_decay: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray, float]:
    """One client's round: returns (delta = -lr * m, the new momentum m, the minibatch loss); ``model`` unchanged."""
    inputs, targets = _tensors(x, y)
    batch_size, seed = check_int("batch_size", batch_size, 1), check_int("seed", seed, 0)
    check_number("lr", lr, lambda v: v > 0, "> 0, e.g. 0.1")
    check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.9")
    check_number("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
    batch = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))[:batch_size]
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.train()
    loss = functional.cross_entropy(model(inputs[batch]), targets[batch])
    loss.backward()
    model.train(was_training)
    grad = np.concatenate([p.grad.detach().reshape(-1).numpy() for p in model.parameters()]).astype(np.float64)
    model.zero_grad(set_to_none=True)
    if weight_decay:
        grad += weight_decay * flatten(model).astype(np.float64)
    m = grad if buffer is None else momentum * buffer + (1.0 - momentum) * grad
    m = m.astype(np.float32)  # the state kept (and checkpointed) between rounds
    return (-lr * m).astype(np.float32), m, float(loss.item())
