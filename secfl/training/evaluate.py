"""Measure a classifier on labelled data: accuracy and mean cross-entropy."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional

from secfl.checks import check_int
from secfl.training.trainer import tensors

__all__ = ["evaluate"]


def evaluate(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, batch_size: int = 1000) -> tuple[float, float]:
    """``(accuracy in [0, 1], mean cross-entropy)`` of ``model`` on (x, y), without changing it
    (eval mode and no gradients; the mode is restored). Raises ``ConfigurationError`` for empty data,
    x and y of different lengths, or a bad batch_size."""
    inputs, targets = tensors(x, y)
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
