"""FedBAT as a method: its trainer, its options (the scenario's ``[fedbat]`` table) and, when its bits go
through the secure sum (a ``fedbat_bits`` stage), the public step sizes as a round hook."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from secfl.hooks import RoundHook
from secfl.methods.base import Method, MethodOptions
from secfl.methods.fedbat.secure import SecureFedBat
from secfl.methods.fedbat.trainer import FedBatTrainer
from secfl.training import Trainer

__all__ = ["FedBat", "FedBatOptions"]


class FedBatOptions(MethodOptions):
    rho: float = Field(6.0, ge=0)
    phi: float = Field(0.5, ge=0, lt=1)
    alpha_min: float = Field(5e-4, gt=0)
    alpha_max: float = Field(5e-2, gt=0)
    alpha_init: float = Field(0.01, gt=0, description="secure route (stage fedbat_bits): public alpha of round 1")
    alpha_update: Literal["learned", "fixed"] = Field(
        "learned", description="secure route: next public alpha = mean of the clients' learned alphas (or fixed)")


class FedBat(Method):
    """FedBAT (Li et al., ICML 2024): binarization-aware local training; see docs/methods/fedbat.md."""

    name: ClassVar[str] = "fedbat"
    Options: ClassVar[type[FedBatOptions]] = FedBatOptions

    @classmethod
    def check(cls, scenario: Any, options: FedBatOptions) -> None:
        dp = scenario.client.dp_sgd
        if dp is not None and dp.grad_sample_mode == "ghost":
            raise ValueError("method 'fedbat' with client.dp_sgd needs grad_sample_mode 'functorch' or 'hooks': ghost "
                             "clipping has no norm sampler for FedBAT's binarized layers")
        if options.alpha_min > options.alpha_max:
            raise ValueError("fedbat.alpha_min must be <= fedbat.alpha_max")
        if not options.alpha_min <= options.alpha_init <= options.alpha_max:
            raise ValueError("fedbat.alpha_init must lie in [fedbat.alpha_min, fedbat.alpha_max]")
        if scenario.client.mode != "fedavg":
            raise ValueError("method 'fedbat' trains local epochs: client.mode = \"gradient\" works only with "
                             "method \"fedavg\"")

    @classmethod
    def reshapes(cls, scenario: Any, options: FedBatOptions) -> bool:
        return any(s.get("kind") == "fedbat_bits" for s in scenario.stages)  # m / alpha plus the proposals

    @property
    def secure(self) -> bool:
        """Whether the bits go through the secure sum (a ``fedbat_bits`` stage) with public step sizes."""
        return any(s.get("kind") == "fedbat_bits" for s in self.scenario.stages)

    def trainer(self) -> Trainer:
        o = self.options
        fixed = self.secure and o.alpha_update == "fixed"  # a fixed public alpha trains with rho = 0
        return FedBatTrainer(rho=0.0 if fixed else o.rho, phi=o.phi, alpha_clamp=(o.alpha_min, o.alpha_max))

    def hooks(self) -> list[RoundHook]:
        if not self.secure:
            return []
        o = self.options
        return [SecureFedBat(self.model, alpha_init=o.alpha_init, update=o.alpha_update,
                             alpha_clamp=(o.alpha_min, o.alpha_max))]
