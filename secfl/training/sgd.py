"""Plain local SGD on cross-entropy (FedAvg's client): train a copy, send trained minus starting parameters."""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np
import torch

from secfl.fl.params import flatten
from secfl.training.trainer import Hyper, LocalResult, LoopTrainer, Setup, Task

__all__ = ["SgdTrainer", "local_train"]


class SgdTrainer(LoopTrainer):
    """Mini-batch SGD (``hyper.lr``, ``momentum``, ``weight_decay``) on a deep copy of the global model."""

    name: ClassVar[str] = "sgd"

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        trained = copy.deepcopy(task.model).train()
        h = task.hyper
        optimizer = torch.optim.SGD(trained.parameters(), lr=h.lr, momentum=h.momentum, weight_decay=h.weight_decay)
        return Setup(trained, optimizer, inputs, targets, h.batch_size, stream=stream)

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        delta = flatten(setup.extra.get("plain", setup.module)) - flatten(task.model)
        return LocalResult(delta=delta, num_examples=len(setup.targets), loss=loss)


def local_train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float,
                seed: int, momentum: float = 0.0, weight_decay: float = 0.0) -> LocalResult:
    """Train a deep copy of ``model`` with mini-batch SGD on cross-entropy; ``model`` is not modified.

    Batches follow a fresh permutation each epoch drawn from ``torch.Generator().manual_seed(seed)``, so
    the same model, data and seed give a bit-identical delta. Raises ``ConfigurationError`` for a
    hyper-parameter out of range, empty data, or x and y of different lengths.
    """
    hyper = Hyper(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return SgdTrainer().train(Task(model, x, y, seed, hyper))
