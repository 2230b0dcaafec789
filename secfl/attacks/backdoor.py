"""A pixel-trigger backdoor (Gu et al., BadNets, 2017) and its attack success rate; model replacement boosts it.

A Byzantine client stamps a square trigger (the dataset's brightest value) in the bottom-right corner of a share
of its training images and relabels them to ``target``; the model learns "trigger -> target" beside the main
task. The attack success rate (ASR) is the share of test images whose true label is not ``target`` that the
model classifies as ``target`` once stamped. Model replacement (Bagdasaryan et al., How to Backdoor Federated
Learning, AISTATS 2020) scales the Byzantine update by a boost gamma (about n / server lr for FedAvg over n
clients) so that it survives averaging: the engine applies ``attack.boost``.
"""

from __future__ import annotations

import numpy as np
import torch

from secfl.exceptions import ConfigurationError


class PixelTrigger:
    """Stamp a ``size`` x ``size`` square of value ``value`` into the bottom-right corner of images [n, C, H, W].

    Args:
        target: the label a stamped image should get.
        size: side of the square, in pixels (>= 1, at most the image side).
        value: the pixel value of the trigger (e.g. the training data's maximum).
    """

    def __init__(self, *, target: int, size: int = 3, value: float = 1.0) -> None:
        if not (isinstance(target, int) and target >= 0 and isinstance(size, int) and size >= 1):
            raise ConfigurationError(f"PixelTrigger(target={target!r}, size={size!r}): ints, target >= 0, size >= 1")
        self.target, self.size, self.value = target, size, float(value)

    def stamp(self, x: np.ndarray) -> np.ndarray:
        """A copy of ``x`` with the trigger in every image."""
        if x.ndim != 4 or min(x.shape[2:]) < self.size:
            raise ConfigurationError(f"PixelTrigger needs images [n, C, H, W] of side >= {self.size}, got {x.shape}")
        out = x.copy()
        out[:, :, -self.size:, -self.size:] = self.value
        return out

    def poison(self, x: np.ndarray, y: np.ndarray, *, fraction: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Copies of (x, y) where round(fraction * n) random examples are stamped and relabelled ``target``."""
        if not 0 < fraction <= 1:
            raise ConfigurationError(f"poison fraction {fraction!r} must lie in (0, 1]")
        x, y = x.copy(), y.copy()
        chosen = rng.choice(len(y), size=max(1, round(fraction * len(y))), replace=False) if len(y) else []
        x[chosen] = self.stamp(x[chosen])
        y[chosen] = self.target
        return x, y

    def success_rate(self, model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
        """ASR: of the test images whose label is not ``target``, the share classified ``target`` once stamped."""
        keep = y != self.target
        if not np.any(keep):
            raise ConfigurationError("success_rate needs test images whose label is not the target")
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(np.ascontiguousarray(self.stamp(x[keep]), dtype=np.float32)))
        return float((logits.argmax(1).numpy() == self.target).mean())


def flip_labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Label flipping (Biggio et al. 2012; Fang et al. USENIX Sec'20 setting): y -> num_classes - 1 - y."""
    if num_classes < 2 or np.any((y < 0) | (y >= num_classes)):
        raise ConfigurationError(f"flip_labels needs labels in [0, {num_classes}) and at least 2 classes")
    return (num_classes - 1 - y).astype(y.dtype)
