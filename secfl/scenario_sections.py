"""The sections of a scenario (``[run] [data] [model] [client] [server] [privacy] [attack]``): pydantic v2 models
whose every key is declared, so a misspelling is an error that names it. ``secfl.scenario.Scenario`` holds them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from secfl import registry
from secfl.fl.data import describe, natural_owners

__all__ = ["Strict", "RunSection", "PartitionSection", "DataSection", "ModelSection", "ClientSection",
           "DpSgdSection", "AttackSection", "ServerSection", "PrivacySection"]


class Strict(BaseModel):
    """A section: every key declared, any other an error; frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _registered(slot: str) -> Any:
    """A field validator: the value must be a name registered in ``slot`` (secfl list)."""

    def check(value: str) -> str:
        choices = registry.names(slot)
        if value not in choices:
            raise ValueError(f"unknown {slot} {value!r}{registry.suggest(str(value), choices)}; "
                             f"choose one of {choices}")
        return value

    return field_validator("kind" if slot != "dataset" else "dataset")(check)


class RunSection(Strict):
    rounds: int = Field(20, ge=1)
    seed: int = Field(0, ge=0)
    clients_per_round: int | None = Field(None, ge=1, description="default: every client, every round")
    sampling: Literal["fixed", "poisson"] = Field(
        "fixed", description="fixed: exactly clients_per_round each round; poisson: each client joins with "
        "probability clients_per_round / num_clients")


class PartitionSection(Strict):
    kind: str = Field("iid", description="a partition (secfl list)")
    _kind = _registered("partition")
    alpha: float | None = Field(None, gt=0)
    shards_per_client: int | None = Field(None, ge=1)
    min_per_client: int = Field(10, ge=1)


class DataSection(Strict):
    dataset: str = Field("mnist", description="a dataset (secfl list)")
    _dataset = _registered("dataset")
    num_clients: int = Field(20, ge=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    public: int = Field(0, ge=0, description="training examples (stratified) held out of every client for the "
                        "server, e.g. FedAgg's public bridge data and autoencoder")
    partition: PartitionSection = PartitionSection()
    options: dict[str, Any] = Field(default_factory=dict, description="dataset parameters, e.g. synthetic alpha; "
                                    "npz path (relative to the scenario file), classes, standardize")

    @model_validator(mode="after")
    def _data_fits(self) -> DataSection:
        if self.dataset == "npz":  # the file is checked now (headers and labels: cheap), not at the first round
            describe(self.dataset, **self.options)
        if self.partition.kind != "natural":
            return self
        owners = natural_owners(self.dataset, **self.options)
        if owners is None:
            raise ValueError(f"partition kind 'natural' needs dataset 'synthetic' or data with owner ids (an npz file "
                             f"with a 'client' array, or a registered Dataset with natural_clients); "
                             f"{self.dataset!r} has no natural clients")
        if owners != self.num_clients:
            has = (f"the synthetic data has options.num_clients = {owners}" if self.dataset == "synthetic"
                   else f"dataset {self.dataset!r} has {owners} distinct owner ids")
            raise ValueError(f"partition kind 'natural': num_clients = {self.num_clients} but {has}; make them equal")
        return self


class ModelSection(Strict):
    kind: str = Field("mlp", description="a model (secfl list)")
    _kind = _registered("model")
    options: dict[str, Any] = Field(default_factory=dict, description="model parameters, e.g. hidden = 128")


class ClientSection(Strict):
    mode: Literal["fedavg", "gradient"] = Field(
        "fedavg", description="fedavg: local epochs, send the delta; gradient: one minibatch gradient with worker "
        "momentum per round, send -lr * momentum (distributed SGD)")
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    weight_cap: float | None = Field(
        None, gt=0, description="a public bound on a client's weight (its example count): a client weighs "
        "min(n, cap) / cap and can compute that itself, as clients in other processes must (1: equal weights)")
    dp_sgd: DpSgdSection | None = Field(None, description="sample-level DP-SGD (Opacus) in local training")
    model_check: bool = Field(False, description="each client checks the model before training and refuses one "
                              "with imprint structure or a zero update on its data (secfl.fl.model_check)")


class DpSgdSection(Strict):
    noise_multiplier: float = Field(ge=0)
    max_grad_norm: float = Field(gt=0)
    grad_sample_mode: Literal["hooks", "functorch", "ghost"] = "hooks"
    delta: float = Field(1e-5, gt=0, lt=1)


class AttackSection(Strict):
    kind: str = Field(description="an update attack (secfl list), or label_flip / backdoor (data attacks)")
    num_byzantine: int = Field(ge=1, description="f: the Byzantine clients (fixed ids drawn from run.seed)")
    options: dict[str, Any] = Field(default_factory=dict, description="the update attack's options, e.g. { z = 1.5 }")
    target: int = Field(0, ge=0, description="backdoor: the label the trigger should produce")
    trigger_size: int = Field(3, ge=1, description="backdoor: side of the square trigger in the bottom-right corner")
    poison_fraction: float = Field(0.5, gt=0, le=1, description="backdoor: share of a Byzantine client's examples")
    boost: float = Field(1.0, gt=0, description="backdoor/label_flip: scale of the Byzantine update "
                         "(model replacement: about the number of clients per round)")
    explore: Literal["none", "inflate", "deflate"] = Field(
        "none", description="AutoFLIP's exploration: Byzantine explorers report a large D on the coordinates "
        "their (poisoned) training moves most (inflate: protect them from pruning), or zero D on the ones their "
        "honest training moves most (deflate: get them pruned)")
    explore_fraction: float = Field(0.01, gt=0, le=1, description="share of the coordinates an exploration "
                                    "attack targets")


class ServerSection(Strict):
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd", description="the server's step on the aggregate: sgd (FedAvg with lr 1) or adam (FedAdam, Reddi "
        "et al. 2021: Adam on the pseudo-gradient; lr e.g. 0.01, eps the adaptivity tau e.g. 1e-3)")
    lr: float = Field(1.0, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd only")
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.99], description="adam only: [beta1, beta2]")
    eps: float = Field(1e-3, gt=0, description="adam only: tau, the adaptivity")

    @model_validator(mode="after")
    def _betas(self) -> ServerSection:
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas = {list(self.betas)} must lie in [0, 1)")
        if self.optimizer == "adam" and self.momentum:
            raise ValueError("momentum is sgd's; adam has betas")
        return self


class PrivacySection(Strict):
    accountant: Literal["auto", "pld", "rdp"] = Field(
        "auto", description="auto: PLD for Poisson sampling of Gaussian rounds, else RDP")
    delta: float = Field(1e-5, gt=0, lt=1)
    target_epsilon: float | None = Field(
        None, gt=0, description="solve the noise stage's noise_multiplier for this epsilon after run.rounds")
    budget: float | None = Field(None, gt=0, description="stop before a round would exceed it "
                                 "(default: target_epsilon)")
