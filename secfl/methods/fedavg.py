"""FedAvg (McMahan et al., AISTATS 2017): local SGD epochs, or one minibatch gradient per round (``client.mode``)."""

from __future__ import annotations

from typing import Any, ClassVar

from secfl.methods.base import Method, MethodOptions
from secfl.training import GradientTrainer, SgdTrainer, Trainer

__all__ = ["FedAvg"]


class FedAvg(Method):
    """``client.mode = "fedavg"``: local SGD epochs (``SgdTrainer``); ``"gradient"``: distributed SGD with
    worker momentum (``GradientTrainer``, no DP-SGD)."""

    name: ClassVar[str] = "fedavg"

    @classmethod
    def check(cls, scenario: Any, options: MethodOptions) -> None:
        if scenario.client.mode == "gradient" and scenario.client.dp_sgd is not None:
            raise ValueError("client.mode = \"gradient\" works without client.dp_sgd")

    def trainer(self) -> Trainer:
        return GradientTrainer() if self.scenario.client.mode == "gradient" else SgdTrainer()
