"""GaussianAttack: Byzantine clients send Gaussian noise."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.attacks.base import UpdateAttack, bool_option, real_option, tile


class GaussianAttack(UpdateAttack):
    """Each Byzantine row b_k ~ N(mu, sigma^2 I_d), drawn from ``rng``; the honest values are not used.

    Args:
        mu: mean of every coordinate (default 0.0).
        sigma: standard deviation of every coordinate (default 1.0); >= 0.
        shared: False (default): the f rows are independent draws. True: one draw sent by all f clients
            (ByzFL's behaviour, whose ByzantineClient tiles the single vector an attack returns).

    Defaults follow ByzFL ``Gaussian(mu=0.0, sigma=1.0)`` and FLPoison ``Gaussian`` (N(0, 1)). Blades'
    ``NoiseAdversary`` defaults to mean 0.1, std 0.1. Much larger sigma (hundreds) also appears in papers'
    experiments; sigma is in the units of the updates, so choose it relative to their norm.

    Guarantee: none; it only tests that a rule ignores unstructured outliers. Against the
        plain mean it adds noise of standard deviation f * sigma / n per coordinate.

    References: ByzFL's Gaussian attack (González et al., arXiv:2505.24802); FLPoison (Zhang et al., SoK:
        Benchmarking Poisoning Attacks and Defenses in Federated Learning, arXiv:2502.03801).
    """

    name: ClassVar[str] = "gaussian"
    strength: ClassVar[str] = "sigma"

    def __init__(self, mu: float = 0.0, sigma: float = 1.0, shared: bool = False) -> None:
        self.mu = real_option("GaussianAttack", "mu", mu)
        self.sigma = real_option("GaussianAttack", "sigma", sigma, low=0.0)
        self.shared = bool_option("GaussianAttack", "shared", shared)

    def _craft(self, honest, f, rng, aggregator) -> np.ndarray:
        d = honest.shape[1]
        if self.shared:
            return tile(self.mu + self.sigma * rng.standard_normal(d), f)
        return self.mu + self.sigma * rng.standard_normal((f, d))
