"""TargetedLogits: Byzantine children of a distillation parent claim that every bridge sample is one class."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, real_option, tile
from secfl.checks import check_int
from secfl.exceptions import ConfigurationError


class TargetedLogits(UpdateAttack):
    """For vectors of logits ``[m, classes]`` (flattened, FedAgg's device and edge uploads): every Byzantine
    client sends the honest mean logits with the ``target`` class raised above each row's largest logit by
    ``margin``, then everything multiplied by ``scale``.

    Args:
        target: the class the attack pushes the parent towards (default 0).
        classes: the logits per bridge sample (default 10); the vector length must be a multiple of it.
        margin: how far the target logit is put above the row's maximum (default 10.0); > 0.
        scale: the factor on the whole forged vector (default 1.0; > 1 also scales the logits up); > 0.

    Guarantee: on every bridge sample the forged logits' top class is ``target``; all f rows equal.
    It is a targeted poisoning of knowledge distillation: a parent that distils from the mean of its
    children with a large KL weight (FedAgg's alpha = 10) learns to favour ``target``.

    References: no published attack of this exact form; it carries targeted label flipping (Tolpegin et al.,
        Data Poisoning Attacks Against Federated Learning Systems, ESORICS 2020) over to the logits a
        distillation parent learns from.
    """

    name: ClassVar[str] = "targeted_logits"
    strength: ClassVar[str] = "margin"

    def __init__(self, target: int = 0, classes: int = 10, margin: float = 10.0, scale: float = 1.0) -> None:
        self.classes = check_int("TargetedLogits classes", classes, 2)
        self.target = check_int("TargetedLogits target", target, 0)
        if self.target >= self.classes:
            raise ConfigurationError(f"TargetedLogits(target={target}): pick a class in [0, {self.classes})")
        self.margin = real_option("TargetedLogits", "margin", margin, low=0.0, strict=True)
        self.scale = real_option("TargetedLogits", "scale", scale, low=0.0, strict=True)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        if honest.shape[1] % self.classes:
            raise ConfigurationError(f"TargetedLogits: vectors of length {honest.shape[1]} are not logits over "
                                     f"{self.classes} classes; set classes to the task's class count")
        logits = honest.mean(axis=0).reshape(-1, self.classes).copy()
        logits[:, self.target] = logits.max(axis=1) + self.margin
        return tile(self.scale * logits.reshape(-1), f)
