"""The FedAgg tree: one model per device and per edge (the cloud's is the engine's global model).

Devices are clients ``0 .. edges * devices_per_edge - 1``; device ``d`` sits under edge
``d // devices_per_edge``. Each tier has its own architecture (``[fedagg] device_model``, ``edge_model``; the
cloud uses the scenario's ``[model]``), built from the model registry with seeds derived from the run's seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import nn

from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.training import evaluate

__all__ = ["Tree"]


def _seed(seed: int, tier: int, index: int) -> int:
    return int(np.random.default_rng([seed, 12, tier, index]).integers(2 ** 31))


class Tree:
    """The device and edge models of a FedAgg run."""

    def __init__(self, *, edges: int, devices_per_edge: int, device_model: Mapping[str, Any],
                 edge_model: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int, seed: int) -> None:
        self.edges, self.devices_per_edge = edges, devices_per_edge

        def build(spec: Mapping[str, Any], tier: int, index: int) -> nn.Module:
            return build_model(spec["kind"], input_shape=input_shape, num_classes=num_classes,
                               seed=_seed(seed, tier, index), **spec.get("options", {}))

        self.device_models = [build(device_model, 0, d) for d in range(edges * devices_per_edge)]
        self.edge_models = [build(edge_model, 1, e) for e in range(edges)]

    def edge_of(self, device: int) -> int:
        return int(device) // self.devices_per_edge

    def children(self, edge: int) -> range:
        return range(edge * self.devices_per_edge, (edge + 1) * self.devices_per_edge)

    def sizes(self) -> dict[str, int]:
        """Parameters of one device model and one edge model."""
        return {"device": num_params(self.device_models[0]), "edge": num_params(self.edge_models[0])}

    def accuracies(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean test accuracy of the device models and of the edge models."""
        return {"device_accuracy": float(np.mean([evaluate(m, x, y)[0] for m in self.device_models])),
                "edge_accuracy": float(np.mean([evaluate(m, x, y)[0] for m in self.edge_models]))}

    def state_dict(self) -> dict[str, Any]:
        return {"devices": [m.state_dict() for m in self.device_models],
                "edges": [m.state_dict() for m in self.edge_models]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for model, saved in zip(self.device_models, state["devices"], strict=True):
            model.load_state_dict(saved)
        for model, saved in zip(self.edge_models, state["edges"], strict=True):
            model.load_state_dict(saved)

