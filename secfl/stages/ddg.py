"""The distributed discrete Gaussian (or Skellam) mechanism: integer DP noise added inside the secure sum.

Client side, TFF's ``DistributedDpSumFactory`` order: randomized Hadamard rotation -> L2 clip to c ->
scale by s -> randomized rounding to integers, retried until the norm meets the conditional bound
-> add this client's integer noise share N_Z(0, sigma^2) (or Skellam) -> wrap into Z_2^b. The group's
masked sum is then the sum of integer vectors plus integer noise of variance m sigma^2; the server
lifts it to signed integers, divides by s and rotates back.

Threat model: the server (and anyone who knows the experiment seed) sees only the group sum, which
already carries the noise of m clients; noise shares and rounding come from the OS CSPRNG and are
integers, so the floating-point attack of Mironov (2012) has no surface. Client dropouts leave less
noise: the realized event (``dp_event(contributors=k)``) is what the ledger accounts. The rotation's
sign diagonal is public randomness (a fixed seed per stage: the guarantee does not depend on it; it
only spreads the vector so that rounding and modular wrap stay small). A coordinate of the sum that
exceeds the ring wraps (probability about ``modclip_prob`` by the choice of s): that distorts utility,
never privacy (post-processing). The noise shares protect a client against the server only inside a
secure sum: over ``Plaintext`` with groups of more than one client a Pipeline refuses the stage unless
it says ``trust="simulation"``.
"""

from __future__ import annotations

import math
import os
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.hazmat import csprng, discrete as sampler, hadamard, ring
from secfl.hazmat.skellam import skellam
from secfl.privacy import discrete_scale
from secfl.privacy.events import DiscreteSumDpEvent
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

MECHANISMS = ("dgauss", "skellam")
TRUSTS = ("secure_sum", "simulation")  # as GaussianNoise's distributed placement
MAX_ROUNDING_TRIES = 1000


class DistributedDiscreteGaussian(BaseStage):
    """Rotate, clip, scale, round and add integer noise shares so that each group's sum is DP.

    Args:
        noise_multiplier: z; each group sum carries noise of standard deviation z * clip (in the
            real domain), split across the m clients of the group (``for_group``).
        clip: the L2 clip norm c.
        dim: the update's dimension (before padding to a power of two for the rotation).
        bits: the ring Z_2^bits of the secure sum (4..32).
        mechanism: ``"dgauss"`` (discrete Gaussian shares) or ``"skellam"``.
        beta: conditional rounding parameter in [0, 1) (0: unconditional rounding).
        modclip_prob: the tolerated probability that a coordinate of the sum wraps (sizes s).
        seed: the public rotation seed (default: drawn from the OS at construction).
        trust: ``"secure_sum"`` (default: a Pipeline over ``Plaintext`` with groups of more than one
            client is an error) or ``"simulation"`` (run it in the clear anyway; against the server
            each upload then carries only its own noise share).

    Guarantee: with k >= 1 clients delivering in a group, that group's sum satisfies the RDP of
    ``DiscreteSumDpEvent`` (KLS21 Thm 1 / AKL21) with the inflated sensitivities of the rounded
    vector; ``secfl.privacy.Accountant(kind="rdp")`` prices it, sampling included. Decoding is
    unbiased up to clipping and wrap; the error per coordinate is about z c / sqrt(d') plus the
    rounding (1 / s per client).

    References: Kairouz, Liu, Steinke, The Distributed Discrete Gaussian Mechanism for Federated
        Learning with Secure Aggregation, ICML 2021; Agarwal, Kairouz, Liu, The Skellam Mechanism for
        Differentially Private Federated Learning, NeurIPS 2021; Canonne, Kamath, Steinke, The
        Discrete Gaussian for Differential Privacy, NeurIPS 2020.
    """

    name: ClassVar[str] = "ddgauss"
    output: ClassVar[str] = "ring"
    placement: ClassVar[str] = "distributed"  # the noise is split over the group, always

    def __init__(self, noise_multiplier: float, clip: float, dim: int, *, bits: int = 16,
                 mechanism: str = "dgauss", beta: float = math.exp(-0.5), modclip_prob: float = 1e-4,
                 seed: int | None = None, trust: str = "secure_sum") -> None:
        if trust not in TRUSTS:
            raise ConfigurationError(f"DistributedDiscreteGaussian(trust={trust!r}): choose one of {TRUSTS}")
        self.trust = trust
        for key, value, low in (("noise_multiplier", noise_multiplier, 0.0), ("clip", clip, 0.0)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > low):
                raise ConfigurationError(f"DistributedDiscreteGaussian({key}={value!r}): must be a finite number > 0")
        if not (isinstance(dim, int) and dim >= 1):
            raise ConfigurationError(f"DistributedDiscreteGaussian(dim={dim!r}): must be an int >= 1")
        if not (isinstance(bits, int) and 4 <= bits <= 32):
            raise ConfigurationError(f"DistributedDiscreteGaussian(bits={bits!r}): must be an int in 4..32")
        if mechanism not in MECHANISMS:
            raise ConfigurationError(f"DistributedDiscreteGaussian(mechanism={mechanism!r}): choose one of {MECHANISMS}")
        if not (isinstance(beta, (int, float)) and 0 <= beta < 1):
            raise ConfigurationError(f"DistributedDiscreteGaussian(beta={beta!r}): must be in [0, 1)")
        self.k_stddevs = discrete_scale.modclip_k(modclip_prob)
        self.noise_multiplier, self.clip, self.dim, self.bits = float(noise_multiplier), float(clip), dim, bits
        self.mechanism, self.beta, self.modclip_prob = mechanism, float(beta), float(modclip_prob)
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(8), "little")
        self.padded = hadamard.padded_length(dim)
        self.share = 0  # m, set by bind
        self.scale = self.local_stddev = self.l2 = self.l1 = math.nan

    def bind(self, *, bound_in: Bounds, group_size: int, min_group_size: int | None = None) -> DistributedDiscreteGaussian:
        bound = DistributedDiscreteGaussian.__new__(DistributedDiscreteGaussian)
        bound.__dict__.update(self.__dict__)
        full = self.noise_multiplier * self.clip / math.sqrt(group_size)  # a full group's share, real units
        try:
            scale = discrete_scale.heuristic_scale(self.bits, group_size, self.padded, self.clip, full, self.k_stddevs)
        except ConfigurationError as exc:
            raise IncompatibleStagesError(f"DistributedDiscreteGaussian: {exc}") from None
        bound.scale = scale
        bound.l2 = discrete_scale.inflated_l2(self.clip, scale, self.padded, self.beta)
        bound.l1 = discrete_scale.inflated_l1(bound.l2, self.padded)
        if full * scale < 0.5:
            raise IncompatibleStagesError(
                f"DistributedDiscreteGaussian: the noise share is {full * scale:.3g} integer units (< 0.5); "
                "raise the noise multiplier or the bits"
            )
        return bound._split(min_group_size or group_size)

    def for_group(self, size: int) -> DistributedDiscreteGaussian:
        """This round's noise share, for a group of ``size`` clients (the scale stays)."""
        self._configured()
        return self if size == self.share else self._split(size)

    def _split(self, size: int) -> DistributedDiscreteGaussian:
        if not (isinstance(size, int) and size >= 1):
            raise ConfigurationError(f"DistributedDiscreteGaussian: group size {size!r} must be an int >= 1")
        split = DistributedDiscreteGaussian.__new__(DistributedDiscreteGaussian)
        split.__dict__.update(self.__dict__)
        split.share = size
        split.local_stddev = self._local(size)
        return split

    def _local(self, shares: int) -> float:
        """Each client's noise standard deviation in integer units when split over ``shares`` clients."""
        return self.noise_multiplier * self.clip * self.scale / math.sqrt(shares)

    def _configured(self) -> None:
        if not self.share:
            raise ConfigurationError("DistributedDiscreteGaussian is configured by a Pipeline (or .bind()); use it inside one")

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        """[x, r] -> the integer vector of rotate/clip/scale/round + noise share, then r, in Z_2^bits."""
        self._configured()
        values = update.values.astype(np.float64)
        if values.size != self.dim + 1:
            raise ConfigurationError(
                f"DistributedDiscreteGaussian was built for dim={self.dim} but got an update of {values.size - 1} values"
            )
        rotated = hadamard.rotate(values[:-1], self.seed)
        length = float(np.linalg.norm(rotated))
        if length > self.clip:
            rotated *= self.clip / length
        integers = self._round(rotated * self.scale) + self._noise()
        weight = np.array([round(values[-1])], dtype=np.int64)  # 1 in a private pipeline; exact
        words = np.concatenate([integers, weight]).astype(np.uint64) & np.uint64((1 << self.bits) - 1)
        return update.replace(words.astype(ring.word_dtype(self.bits)))

    def _round(self, scaled: np.ndarray) -> np.ndarray:
        """Unbiased randomized rounding, retried until the L2 norm is within the (beta) bound."""
        floor = np.floor(scaled)
        for _ in range(MAX_ROUNDING_TRIES):
            rounded = floor + (csprng.uniform(scaled.size) < scaled - floor)
            if self.beta == 0 or np.linalg.norm(rounded) <= self.l2:
                return rounded.astype(np.int64)
        raise ConfigurationError("randomized rounding kept exceeding its norm bound; raise beta toward 1 or use beta=0")

    def _noise(self) -> np.ndarray:
        if self.mechanism == "dgauss":
            return sampler.discrete_gaussian(self.local_stddev, self.padded)
        return skellam(self.local_stddev**2, self.padded)

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        """The group's sum of words -> [sum of the (clipped) updates, number of contributors]."""
        self._configured()
        signed = ring.lift(np.asarray(total), self.bits).astype(np.float64)
        body = hadamard.unrotate(signed[:-1] / self.scale, self.seed, self.dim)
        return np.append(body, signed[-1])

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=2.0 ** (self.bits - 1) / self.scale if self.share else math.inf, l2=math.inf)

    def dp_event(self, contributors: int | None = None, shares: int | None = None) -> DiscreteSumDpEvent:
        """One group sum: ``contributors`` of the ``shares`` clients the noise was split over delivered."""
        self._configured()
        shares = shares or self.share
        return DiscreteSumDpEvent(self.mechanism, self.l2, self.l1, self._local(shares),
                                  min(contributors or shares, shares), self.padded, self.scale)

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/bits": float(self.bits), f"{self.name}/scale": self.scale,
                f"{self.name}/padded_dim": float(self.padded), f"{self.name}/local_stddev": self.local_stddev,
                f"{self.name}/inflated_l2": self.l2}

    def __repr__(self) -> str:
        return (f"DistributedDiscreteGaussian(noise_multiplier={self.noise_multiplier}, clip={self.clip}, dim={self.dim}, "
                f"bits={self.bits}, mechanism={self.mechanism!r}"
                + (f", trust={self.trust!r})" if self.trust != "secure_sum" else ")"))
