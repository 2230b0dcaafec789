"""Gaussian noise for client-level DP-FedAvg: added by each client, split across a group, or central.

Threat model: in secure mode (the default) the noise comes from the OS CSPRNG, so neither the
server nor anyone who knows the experiment seed can predict and subtract it. ``secure=False`` draws
from the experiment RNG instead: reproducible, for experiments only, never for a privacy claim.

Placement decides who must be trusted:
- ``"distributed"``: each client adds N(0, z^2 C^2 / m) for the m clients of its group this round
  (the protocol's participant list tells it m), so the group's sum carries N(0, z^2 C^2) and the
  server never sees an un-noised sum: this is the mode that composes with a secure sum. Clients
  that drop out after committing leave less noise; the pipeline reports the realized noise
  multiplier and the ledger accounts for it.
- ``"central"``: the (trusted) server adds N(0, z^2 C^2) to each decoded group sum.
- ``"client"``: each client adds the full N(0, z^2 C^2) to its own update (local noise).

Distributed noise assumes a secure sum: over ``Plaintext`` in groups of more than one client the
server sees every upload with only its own share N(0, z^2 C^2 / m), which is local DP at z / sqrt(m)
against the server. A ``Pipeline`` refuses that unless the stage says ``trust="simulation"`` (an
experiment that simulates the secure sum in the clear); the ledger then prices the server's view at
the share's noise.

Floating point (Mironov, CCS 2012): a noisy float's low-order bits can reveal the value it was added
to. In secure mode every noisy value is snapped to a power-of-two grid of about std * 2^-20, far
coarser than the float resolution of the Box-Muller draws, which removes that fine structure (the
snapping defence of Mironov's paper; a mitigation argued, not a proof). The exact-integer route is
``DistributedDiscreteGaussian``.
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
PLACEMENTS = ("distributed", "central", "client")
TRUSTS = ("secure_sum", "simulation")  # what distributed noise assumes of the protocol
SNAP_BITS = 20  # the secure-mode grid is 2^(ceil(log2 std) - SNAP_BITS)


def snap(values: np.ndarray, std: float) -> np.ndarray:
    """Round ``values`` to the power-of-two grid for noise of standard deviation ``std``."""
    if std <= 0:
        return values
    grid = 2.0 ** (math.ceil(math.log2(std)) - SNAP_BITS)
    return np.round(values / grid) * grid


class GaussianNoise(BaseStage):
    """Gaussian noise calibrated to the L2 bound C of the input: z * C on each group's sum.

    Args:
        noise_multiplier: z; needs an L2 bound upstream (put ``L2Clip`` first). Give exactly one
            of ``noise_multiplier`` and ``std``.
        std: an absolute per-client standard deviation (no DP claim: its event is non-private).
        placement: ``"distributed"`` (default), ``"central"`` or ``"client"``; see the module doc.
        secure: draw from the OS CSPRNG and snap to a grid (default) or, if False, from the
            experiment RNG (client placements; central noise is drawn by the server at decode,
            which has no experiment RNG, so with secure=False it uses a fresh numpy generator and
            is not reproducible).
        trust: distributed placement only. ``"secure_sum"`` (default): the group's noise protects each
            client against the server only inside a secure sum, so a Pipeline over ``Plaintext`` with
            groups of more than one client is an error. ``"simulation"``: run it anyway (an experiment
            standing in for a secure sum); the server then sees each upload with its own share only.

    Guarantee: with ``L2Clip(C)`` before it and all m clients of a group delivering, each group sum
    is the Gaussian mechanism with L2 sensitivity C and noise multiplier z (``dp_event``); with k < m
    survivors the multiplier is z * sqrt(k / m) (``dp_event(contributors=k, shares=m)``).
    Values beyond TAIL standard deviations are clamped by a later ``Quantize`` (post-processing).

    References: McMahan et al., Learning Differentially Private Recurrent Language Models, ICLR 2018
        (DP-FedAvg); Mironov, On Significance of the Least Significant Bits for DP, CCS 2012.
    """

    name: ClassVar[str] = "gaussian_noise"

    def __init__(
        self,
        noise_multiplier: float | None = None,
        *,
        std: float | None = None,
        placement: str = "distributed",
        secure: bool = True,
        trust: str = "secure_sum",
    ) -> None:
        if (noise_multiplier is None) == (std is None):
            raise ConfigurationError("GaussianNoise: give exactly one of noise_multiplier= and std=")
        for key, value in (("noise_multiplier", noise_multiplier), ("std", std)):
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"GaussianNoise({key}={value!r}): must be a finite number >= 0")
        if placement not in PLACEMENTS:
            raise ConfigurationError(f"GaussianNoise(placement={placement!r}): choose one of {PLACEMENTS}")
        if trust not in TRUSTS:
            raise ConfigurationError(f"GaussianNoise(trust={trust!r}): choose one of {TRUSTS}")
        if std is not None and placement != "client":
            placement = "client"  # an absolute std is what each client adds
        if trust != "secure_sum" and placement != "distributed":
            raise ConfigurationError(
                f"GaussianNoise(trust={trust!r}) applies to placement='distributed' only (this stage's placement "
                f"is {placement!r}); drop trust="
            )
        self.noise_multiplier = None if noise_multiplier is None else float(noise_multiplier)
        self.std = None if std is None else float(std)
        self.placement, self.trust = placement, trust
        self.secure = bool(secure)
        self.share = 1  # m: the clients whose noise adds up in one group sum (distributed placement)
        self._sensitivity = math.inf

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> GaussianNoise:
        bound = GaussianNoise.__new__(GaussianNoise)
        bound.__dict__.update(self.__dict__)
        bound._sensitivity = bound_in.l2
        if self.noise_multiplier is not None:
            if not math.isfinite(bound_in.l2):
                raise IncompatibleStagesError(
                    "GaussianNoise(noise_multiplier=...) needs a bounded L2 sensitivity: "
                    "put L2Clip(norm=C) before it, or give std= instead"
                )
            bound.share = (min_group_size or group_size) if self.placement == "distributed" else 1
            bound.std = self.noise_multiplier * bound_in.l2
        return bound

    def for_group(self, size: int) -> GaussianNoise:
        """Distributed placement: this round's share, for a group of ``size`` clients."""
        if self.placement != "distributed" or size == self.share:
            return self
        if not (isinstance(size, int) and size >= 1):
            raise ConfigurationError(f"GaussianNoise.for_group(size={size!r}): size must be an int >= 1")
        split = GaussianNoise.__new__(GaussianNoise)
        split.__dict__.update(self.__dict__)
        split.share = size
        return split

    def _std(self) -> float:
        if self.std is None:
            raise ConfigurationError(
                "GaussianNoise(noise_multiplier=...) is calibrated by a Pipeline; use it inside one "
                "or give std="
            )
        return self.std

    def client_std(self) -> float:
        """The standard deviation each client adds (0 for central noise)."""
        if self.placement == "central":
            return 0.0
        return self._std() / math.sqrt(self.share)

    def _noise(self, size: int, std: float, rng: np.random.Generator) -> np.ndarray:
        return std * (csprng.normal(size) if self.secure else rng.standard_normal(size))

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        std = self.client_std()
        if std == 0:
            return update
        noisy = update.values.astype(np.float64) + self._noise(update.values.size, std, rng)
        return update.replace((snap(noisy, std) if self.secure else noisy).astype(np.float32))

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        """Central placement: add N(0, (z C)^2) to the group sum (the weight total, last, is left alone)."""
        if self.placement != "central" or self._std() == 0:
            return total
        noisy = np.asarray(total, dtype=np.float64).copy()
        body = noisy[:-1] + self._noise(noisy.size - 1, self._std(), np.random.default_rng())
        noisy[:-1] = snap(body, self._std()) if self.secure else body
        return noisy

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=bound_in.linf + TAIL * self.client_std(), l2=math.inf)

    def dp_event(self, contributors: int | None = None, shares: int | None = None) -> dp_accounting.DpEvent:
        """The event of one group sum holding the noise of ``contributors`` of its ``shares`` clients
        (default: all of them)."""
        std = self._std()
        if not math.isfinite(self._sensitivity) or std == 0 or self.noise_multiplier is None:
            return dp_accounting.NonPrivateDpEvent()
        z = std / self._sensitivity
        if self.placement == "distributed" and contributors is not None:
            z *= math.sqrt(min(1.0, contributors / (shares or self.share)))
        return dp_accounting.GaussianDpEvent(noise_multiplier=z)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/std": self._std(), f"{self.name}/client_std": self.client_std()}

    def __repr__(self) -> str:
        what = f"noise_multiplier={self.noise_multiplier}" if self.noise_multiplier is not None else f"std={self.std}"
        trust = f", trust={self.trust!r}" if self.trust != "secure_sum" else ""
        return f"GaussianNoise({what}, placement={self.placement!r}, secure={self.secure}{trust})"
