"""FedAgg as a method: the ``[fedagg]`` options, the tree of models, the device trainer and the round hook
(see docs/methods/fedagg.md)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import dp_accounting
from pydantic import Field

from secfl.attacks.registry import build_attack
from secfl.exceptions import ConfigurationError
from secfl.fl.data import describe
from secfl.fl.models import build_model
from secfl.hooks import RoundHook
from secfl.methods.base import Method, MethodOptions
from secfl.methods.fedagg.bridges import code_event
from secfl.methods.fedagg.rounds import LATENT, FedAggRounds
from secfl.methods.fedagg.trainer import DeviceTrainer
from secfl.methods.fedagg.tree import Tree
from secfl.training import Trainer

__all__ = ["FedAgg", "FedAggOptions"]

_SMALL = {"kind": "cnn", "options": {"channels": 4, "groups": 2, "hidden": 16}}
_MEDIUM = {"kind": "cnn", "options": {"channels": 8, "groups": 4, "hidden": 32}}


class FedAggOptions(MethodOptions):
    edges: int = Field(3, ge=1, description="edge servers under the cloud")
    devices_per_edge: int = Field(5, ge=1, description="devices (clients) under each edge")
    device_model: dict[str, Any] = Field(default_factory=lambda: dict(_SMALL), description="the devices' model "
                                         "(a model table: kind and options); the cloud's is the scenario's [model]")
    edge_model: dict[str, Any] = Field(default_factory=lambda: dict(_MEDIUM), description="the edges' model")
    bridge: Literal["public", "synthetic", "latent", "latent_dp"] = Field(
        "public", description="bridge samples: the public split, synthetic codes decoded, the devices' own latent "
        "codes (the paper's: leaks), or those codes under DP")
    bridge_labels: bool = Field(True, description="false: no tier learns the bridge samples' labels (pure "
                                "distillation: all knowledge comes from the devices' data through the logits)")
    bridge_size: int = Field(512, ge=1, description="bridge samples each parent draws per round")
    temperature: float = Field(3.0, gt=0, description="T of the distillation loss")
    alpha_leaf: float = Field(1.0, ge=0, description="KL weight of a device learning from its edge")
    alpha_nonleaf: float = Field(10.0, ge=0, description="KL weight of an edge or the cloud learning")
    alpha_private: float = Field(1.0, ge=0, description="weight of a device's cross-entropy on its own data")
    distill_lr: float = Field(0.001, gt=0, description="SGD learning rate of the edges and the cloud (the paper's)")
    distill_momentum: float = Field(0.9, ge=0, lt=1)
    distill_batch_size: int = Field(8, ge=1, description="the paper's batch of bridge samples")
    distill_epochs: int = Field(1, ge=1, description="passes over the bridge set per distillation")
    autoencoder_epochs: int = Field(10, ge=1, description="training of the shared autoencoder on the public split")
    codes_per_device: int = Field(100, ge=1, description="latent bridges: examples each device encodes and sends")
    code_clip: float = Field(40.0, gt=0, description="latent_dp: L2 bound on each code")
    code_noise: float = Field(1.0, gt=0, description="latent_dp: noise std in units of code_clip")
    label_epsilon: float = Field(2.0, gt=0, description="latent_dp: randomized response on each label")
    logit_clip: float | None = Field(None, gt=0, description="defence: devices clip the logits they send and "
                                     "parents clip every input to [-logit_clip, logit_clip]")
    rule: Literal["mean", "median", "trimmed_mean", "agreement"] = Field(
        "mean", description="how a parent combines its children's (or buckets') logits")
    trim: int = Field(1, ge=0, description="trimmed_mean: inputs dropped on each side")
    poisoned_edges: int = Field(0, ge=0, description="attack: edges that send forged logits to the cloud")
    edge_attack: dict[str, Any] = Field(default_factory=lambda: {"kind": "sign_flip"},
                                        description="the update attack the poisoned edges use, e.g. "
                                        "{kind = \"sign_flip\"}")


class FedAgg(Method):
    """FedAgg (Wu et al., INFOCOM 2024): agglomerative FL by bridge-sample mutual distillation on a tree."""

    name: ClassVar[str] = "fedagg"
    Options: ClassVar[type[FedAggOptions]] = FedAggOptions

    @classmethod
    def check(cls, scenario: Any, options: FedAggOptions) -> None:
        devices = options.edges * options.devices_per_edge
        if scenario.data.num_clients != devices:
            raise ValueError(f"fedagg: data.num_clients = {scenario.data.num_clients} but the tree has "
                             f"{options.edges} x {options.devices_per_edge} = {devices} devices")
        grouping = scenario.grouping
        if grouping.get("kind") != "edges" or grouping.get("devices_per_edge") != options.devices_per_edge:
            raise ValueError(f"fedagg sums each edge's logits apart: set grouping = {{ kind = \"edges\", "
                             f"devices_per_edge = {options.devices_per_edge} }} (add bucket_size for a robust rule "
                             "over buckets)")
        if scenario.aggregator.get("kind") != "mean" or scenario.pre:
            raise ValueError("fedagg combines logits per parent with fedagg.rule; leave the aggregator \"mean\" "
                             "and pre empty")
        if scenario.data.public < 1:
            raise ValueError("fedagg needs public data for its bridges and autoencoder: set data.public (e.g. 1000)")
        if scenario.server.lr != 1.0 or scenario.server.momentum != 0.0:
            raise ValueError("fedagg's server step is the cloud's distillation: leave server.lr = 1, momentum = 0")
        if scenario.client.mode != "fedavg" or scenario.client.dp_sgd is not None:
            raise ValueError("fedagg devices distil locally: client.mode = \"fedavg\", and no client.dp_sgd")
        if any(s.get("kind") in ("ddgauss", "fedbat_pack", "fedbat_bits", "ewwa") for s in scenario.stages):
            raise ValueError("fedagg sends logits: stages that need the model's dimension (ddgauss, fedbat_*, "
                             "ewwa) do not apply")
        if options.poisoned_edges >= options.edges:
            raise ValueError("fedagg.poisoned_edges must leave at least one honest edge")
        if options.poisoned_edges:
            try:
                build_attack(options.edge_attack, where="fedagg.edge_attack")
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        shape, classes = describe(scenario.data.dataset, **scenario.data.options)
        if options.bridge != "public" and (len(shape) != 3 or shape[1] % 4 or shape[2] % 4):
            raise ValueError(f"fedagg.bridge = {options.bridge!r} encodes images through the autoencoder: the data "
                             f"must be images with sides a multiple of 4, not {shape}; use bridge = \"public\"")
        if options.bridge in LATENT and not options.bridge_labels:
            raise ValueError("fedagg.bridge_labels = false applies to public and synthetic bridges: latent codes are "
                             "uploaded with their labels")
        for key in ("device_model", "edge_model"):
            spec = getattr(options, key)
            if set(spec) - {"kind", "options"} or "kind" not in spec or not isinstance(spec.get("options", {}), dict):
                raise ValueError(f"fedagg.{key}: a table with 'kind' and an optional 'options' table, e.g. {_SMALL}")
            try:
                build_model(spec["kind"], input_shape=shape, num_classes=classes, seed=0, **spec.get("options", {}))
            except ConfigurationError as exc:
                raise ValueError(f"fedagg.{key}: {exc}") from None
        _check_rule(scenario, options)
        _check_logit_attacks(scenario, options, classes)
        if options.bridge == "latent_dp":
            try:
                _example_epsilon(scenario, options, classes)
            except ConfigurationError as exc:
                raise ValueError(f"fedagg.bridge = \"latent_dp\": {exc}") from None

    def __init__(self, scenario: Any, model: Any) -> None:
        super().__init__(scenario, model)
        o = self.options
        shape, classes = describe(scenario.data.dataset, **scenario.data.options)
        self.tree = Tree(edges=o.edges, devices_per_edge=o.devices_per_edge, device_model=o.device_model,
                         edge_model=o.edge_model, input_shape=shape, num_classes=classes, seed=scenario.run.seed)
        self.rounds = FedAggRounds(o, self.tree, seed=scenario.run.seed)
        if o.bridge == "latent_dp":  # what one released example costs (example-level DP)
            self.rounds.example_epsilon = _example_epsilon(scenario, o, classes)

    def trainer(self) -> Trainer:
        return DeviceTrainer(self.tree, self.options)

    def hooks(self) -> list[RoundHook]:
        return [self.rounds]

    @classmethod
    def releases(cls, scenario: Any, options: FedAggOptions) -> dict[str, tuple[Any, Any, int]]:
        if options.bridge not in LATENT:
            return {}
        if options.bridge == "latent":  # decodable codes of private data: no privacy at all
            event = dp_accounting.NonPrivateDpEvent()
        else:  # a client's whole data changes every code it sends: the composition over all of them
            _, classes = describe(scenario.data.dataset, **scenario.data.options)
            event = dp_accounting.SelfComposedDpEvent(code_event(options.code_noise, options.label_epsilon, classes),
                                                      options.codes_per_device)
        return {f"fedagg/{options.bridge}": (event, event, 1)}

    @classmethod
    def reshapes(cls, scenario: Any, options: FedAggOptions) -> bool:
        return True


def _example_epsilon(scenario: Any, options: FedAggOptions, classes: int) -> float:
    """The epsilon of one example released under ``latent_dp`` (its code and its label), at the run's delta."""
    return scenario.accountant().epsilon_of([], sample_rate=1.0, delta=scenario.privacy.delta,
                                            unsampled=[(code_event(options.code_noise, options.label_epsilon,
                                                                   classes), 1)])


def _check_rule(scenario: Any, options: FedAggOptions) -> None:
    """A robust rule needs >= 3 inputs somewhere: buckets inside an edge, or edges at the cloud."""
    if options.rule == "mean":
        return
    bucket = scenario.grouping.get("bucket_size") or options.devices_per_edge
    per_edge = -(-options.devices_per_edge // bucket)
    if per_edge < 3 and options.edges < 3:
        raise ValueError(f"fedagg.rule = {options.rule!r} would combine {per_edge} bucket(s) per edge and "
                         f"{options.edges} edge(s) at the cloud: it needs >= 3 inputs somewhere (set "
                         "grouping.bucket_size so each edge has >= 3 buckets, or use >= 3 edges)")


def _check_logit_attacks(scenario: Any, options: FedAggOptions, classes: int) -> None:
    """``targeted_logits`` must cut the logit vectors at the task's class count."""
    specs = [("fedagg.edge_attack", options.edge_attack)] if options.poisoned_edges else []
    if scenario.attack is not None and scenario.attack.kind == "targeted_logits":
        specs.append(("attack.options", scenario.attack.options))
    for where, spec in specs:
        if spec.get("kind", "targeted_logits") == "targeted_logits" and spec.get("classes", 10) != classes:
            raise ValueError(f"{where}: targeted_logits over {spec.get('classes', 10)} classes, but the data has "
                             f"{classes}: set classes = {classes}")
