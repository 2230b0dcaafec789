"""FedAgg's bridge samples: the inputs on which a parent and its children exchange logits.

Four sources (``[fedagg] bridge``):

- ``public`` (the default): the server's public split (``data.public``), disjoint from every client.
  Nothing private leaves a device except its logits.
- ``synthetic``: images decoded from codes drawn from a Gaussian fitted per class to the public split's codes
  (no client data; fresh samples every round).
- ``latent`` (the paper's, kept for fidelity): each device encodes some of its own examples with the shared
  autoencoder and sends the codes and labels up once; anyone holding the public decoder sees blurry copies of
  those private images. It leaks by design (``secfl audit privacy`` measures how much).
- ``latent_dp``: as ``latent``, but every code is clipped to L2 norm ``code_clip`` and gets Gaussian noise of
  std ``code_noise * code_clip`` (add/remove sensitivity ``code_clip``), and every label goes through k-ary
  randomized response with ``label_epsilon``: one ``dp_accounting`` event per released example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dp_accounting
import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.methods.fedagg.autoencoder import AutoEncoder

__all__ = ["Pool", "Codes", "private_codes", "code_event", "synthetic_sample", "randomized_response"]


@dataclass(frozen=True)
class Pool:
    """A parent's bridge pool: images ``x`` ``[n, *shape]`` with labels ``y`` ``[n]``."""

    x: np.ndarray
    y: np.ndarray

    def sample(self, size: int, rng: np.random.Generator) -> Pool:
        """Exactly ``size`` examples: drawn without replacement, or, from a smaller pool, all of them plus
        extras drawn with replacement (every parent's bridge set has the same size, so the children's logit
        vectors of different edges have one length)."""
        n = len(self.y)
        if n == 0:
            raise ConfigurationError("a FedAgg parent has no bridge sample to draw from")
        if n >= size:
            pick = rng.choice(n, size=size, replace=False)
        else:
            pick = np.concatenate([np.arange(n), rng.choice(n, size=size - n, replace=True)])
        pick = np.sort(pick)
        return Pool(self.x[pick], self.y[pick])


@dataclass(frozen=True)
class Codes:
    """Latent codes one device released, with their (possibly randomized) labels. ``index``: the positions of
    the encoded examples in the device's data, the auditor's ground truth (never sent; kept in the checkpoint)."""

    codes: np.ndarray
    y: np.ndarray
    index: np.ndarray | None = None


def randomized_response(y: np.ndarray, epsilon: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """k-ary randomized response: each label is kept with probability e^eps / (e^eps + k - 1), else replaced by
    one of the k - 1 other labels uniformly (epsilon-DP per label)."""
    keep = rng.random(len(y)) < math.exp(epsilon) / (math.exp(epsilon) + num_classes - 1)
    other = (y + rng.integers(1, num_classes, size=len(y))) % num_classes
    return np.where(keep, y, other).astype(np.int64)


def private_codes(autoencoder: AutoEncoder, x: np.ndarray, y: np.ndarray, *, count: int, num_classes: int,
                  rng: np.random.Generator, dp: tuple[float, float, float] | None = None) -> Codes:
    """The codes a device releases: ``count`` of its examples (all if fewer), encoded; with
    ``dp = (code_clip, code_noise, label_epsilon)`` clipped, noised and label-randomized (``latent_dp``)."""
    pick = np.sort(rng.choice(len(y), size=min(count, len(y)), replace=False))
    codes = autoencoder.encode(x[pick])
    labels = y[pick].astype(np.int64)
    if dp is not None:
        clip, noise, label_epsilon = dp
        flat = codes.reshape(len(codes), -1).astype(np.float64)
        norms = np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
        flat = flat * np.minimum(1.0, clip / norms) + rng.normal(0.0, noise * clip, size=flat.shape)
        codes = flat.reshape(codes.shape).astype(np.float32)
        labels = randomized_response(labels, label_epsilon, num_classes, rng)
    return Codes(codes, labels, pick)


def code_event(code_noise: float, label_epsilon: float, num_classes: int) -> dp_accounting.DpEvent:
    """The privacy event of one released example under ``latent_dp``: its Gaussian-noised code (noise
    multiplier ``code_noise``) and its randomized-response label."""
    replace = num_classes / (math.exp(label_epsilon) + num_classes - 1)  # P(label replaced by a uniform draw)
    return dp_accounting.ComposedDpEvent((dp_accounting.GaussianDpEvent(code_noise),
                                          dp_accounting.RandomizedResponseDpEvent(replace, num_classes)))


def synthetic_sample(autoencoder: AutoEncoder, public_codes: np.ndarray, public_y: np.ndarray, size: int,
                     rng: np.random.Generator) -> Pool:
    """``size`` labelled images decoded from codes drawn, per class in proportion to the public labels, from a
    diagonal Gaussian fitted to that class's public codes."""
    classes, counts = np.unique(public_y, return_counts=True)
    labels = rng.choice(classes, size=size, p=counts / counts.sum())
    codes = np.empty((size, *public_codes.shape[1:]), np.float32)
    for c in classes:
        members = public_codes[public_y == c]
        mean, std = members.mean(axis=0), members.std(axis=0)
        where = labels == c
        codes[where] = mean + std * rng.standard_normal((int(where.sum()), *mean.shape))
    return Pool(autoencoder.decode(codes), labels.astype(np.int64))
