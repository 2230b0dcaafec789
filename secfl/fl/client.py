"""Local client work: deterministic SGD training returning a parameter delta, and evaluation."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError
from secfl.fl.params import flatten

__all__ = ["LocalResult", "evaluate", "local_train"]


@dataclass(frozen=True)
class LocalResult:
    """The outcome of one client's local training.

    Attributes:
        delta: float32 ``[d]``: trained parameters minus starting parameters (``flatten`` order).
        num_examples: Number of training examples used.
        loss: Mean per-example training loss over the last epoch.
    """

    delta: np.ndarray
    num_examples: int
    loss: float


def local_train(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> LocalResult:
    """Train a deep copy of ``model`` with mini-batch SGD on cross-entropy; ``model`` is not modified.

    Batches follow a fresh permutation each epoch drawn from ``torch.Generator().manual_seed(seed)``,
    so the same model, data and seed give a bit-identical delta. The last batch may be smaller.

    Args:
        model: The starting model (its parameters define the delta's origin).
        x: float inputs ``[n, *input_shape]``.
        y: int labels ``[n]``.
        epochs: Passes over the data, >= 1.
        batch_size: Examples per step, >= 1.
        lr: SGD learning rate, > 0.
        seed: Shuffling seed, >= 0.
        momentum: SGD momentum in [0, 1).
        weight_decay: L2 penalty >= 0.

    Returns:
        The ``LocalResult``.

    Raises:
        ConfigurationError: A hyper-parameter out of range, empty data, or x and y of different lengths.
    """
    inputs, targets = _tensors(x, y)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    check_number("lr", lr, lambda v: v > 0, "> 0, e.g. 0.05")
    check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    check_number("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")

    trained = copy.deepcopy(model)
    trained.train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = len(targets)
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            loss = functional.cross_entropy(trained(inputs[batch]), targets[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
    return LocalResult(delta=flatten(trained) - flatten(model), num_examples=n, loss=total / n)


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000) -> tuple[float, float]:
    """Measure ``model`` on labelled data without changing it (eval mode, no gradients; mode restored).

    Args:
        model: The classifier.
        x: float inputs ``[n, *input_shape]``.
        y: int labels ``[n]``.
        batch_size: Examples per forward pass, >= 1.

    Returns:
        ``(accuracy in [0, 1], mean cross-entropy loss)``.

    Raises:
        ConfigurationError: Empty data, x and y of different lengths, or a bad batch_size.
    """
    inputs, targets = _tensors(x, y)
    batch_size = check_int("batch_size", batch_size, 1)
    was_training = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    try:
        with torch.no_grad():
            for xb, yb in zip(inputs.split(batch_size), targets.split(batch_size), strict=True):
                logits = model(xb)
                total_loss += functional.cross_entropy(logits, yb, reduction="sum").item()
                correct += int((logits.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    return correct / len(targets), total_loss / len(targets)


def _tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate x/y and copy them once into float32 / int64 tensors."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ConfigurationError(
            f"x has shape {x.shape} and y has shape {y.shape}; pass non-empty x [n, ...] and y [n] with the same n"
        )
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ConfigurationError(f"y has dtype {y.dtype}; pass non-negative integer labels")
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
