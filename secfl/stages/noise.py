"""Gaussian noise added by each client: the continuous Gaussian mechanism.

Threat model: in secure mode (the default) the noise comes from the OS CSPRNG, so neither the
server nor anyone who knows the experiment seed can predict and subtract it. ``secure=False`` draws
from the experiment RNG instead: reproducible, for experiments only, never for a privacy claim.
"""

from __future__ import annotations

import math
from typing import ClassVar

import dp_accounting
import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.hazmat import csprng
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

TAIL = 9.0  # |N(0, 1)| > 9 has probability 2e-19: the ring bound assumes noise within TAIL * std


class GaussianNoise(BaseStage):
    """Add N(0, std^2) to every coordinate.

    Args:
        noise_multiplier: z; std = z * (L2 sensitivity of the input), which needs an L2 bound
            upstream (put ``L2Clip`` first). Give exactly one of ``noise_multiplier`` and ``std``.
        std: an absolute standard deviation.
        secure: draw from the OS CSPRNG (default) or, if False, from the experiment RNG.

    Guarantee: with an ``L2Clip(C)`` before it and z given, one application is the Gaussian
    mechanism with L2 sensitivity C and noise multiplier z (``dp_event``). Values beyond
    TAIL standard deviations are clamped by a later ``Quantize`` (post-processing).

    References: Dwork & Roth, The Algorithmic Foundations of Differential Privacy, 2014, App. A;
        McMahan et al., ICLR 2018 (DP-FedAvg).
    """

    name: ClassVar[str] = "gaussian_noise"

    def __init__(
        self, noise_multiplier: float | None = None, *, std: float | None = None, secure: bool = True
    ) -> None:
        if (noise_multiplier is None) == (std is None):
            raise ConfigurationError("GaussianNoise: give exactly one of noise_multiplier= and std=")
        for key, value in (("noise_multiplier", noise_multiplier), ("std", std)):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"GaussianNoise({key}={value!r}): must be a finite number >= 0")
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        self.std = None if std is None else float(std)
        self.secure = bool(secure)
        self._sensitivity = math.inf

    def bind(self, *, bound_in: Bounds, group_size: int) -> GaussianNoise:
        bound = GaussianNoise.__new__(GaussianNoise)
        bound.__dict__.update(self.__dict__)
        bound._sensitivity = bound_in.l2
        if self.noise_multiplier is not None:
            if not math.isfinite(bound_in.l2):
                raise IncompatibleStagesError(
                    "GaussianNoise(noise_multiplier=...) needs a bounded L2 sensitivity: "
                    "put L2Clip(norm=C) before it, or give std= instead"
                )
            bound.std = self.noise_multiplier * bound_in.l2
        return bound

    def _std(self) -> float:
        if self.std is None:
            raise ConfigurationError(
                "GaussianNoise(noise_multiplier=...) is calibrated by a Pipeline; use it inside one "
                "or give std="
            )
        return self.std

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        d = update.values.size
        draws = csprng.normal(d) if self.secure else rng.standard_normal(d)
        noisy = update.values.astype(np.float64) + self._std() * draws
        return update.replace(noisy.astype(np.float32))

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=bound_in.linf + TAIL * self._std(), l2=math.inf)

    def dp_event(self) -> dp_accounting.DpEvent:
        std = self._std()
        if not math.isfinite(self._sensitivity) or std == 0:
            return dp_accounting.NonPrivateDpEvent()
        return dp_accounting.GaussianDpEvent(noise_multiplier=std / self._sensitivity)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/std": self._std()}

    def __repr__(self) -> str:
        what = f"noise_multiplier={self.noise_multiplier}" if self.std is None else f"std={self.std}"
        return f"GaussianNoise({what}, secure={self.secure})"
