"""Everything one run of the engine builds from its scenario, what its checkpoint holds, and its summary.

``RunSetup`` holds the checked pipeline, the privacy ledger, the data and its partition, the model and the
server optimizer, the method's trainer, the round hooks (the method's, the attack's, the server reference an
aggregator asks for) and every client's state. ``checkpoint``/``restore`` are the resume contract.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from secfl import registry
from secfl.attacks.byzantine import Adversary
from secfl.exceptions import ConfigurationError
from secfl.runs import RunDir
from secfl.fl.data import hold_out_public, load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.fl.partition import partition
from secfl.hooks import RoundHook, ServerReference
from secfl.pipeline import Pipeline
from secfl.privacy import Ledger
from secfl.scenario import Scenario
from secfl.training import Hyper

__all__ = ["RunSetup", "account", "client_seed", "sample_clients", "summarize"]


def client_seed(seed: int, round_: int, client: int) -> int:
    """The local-training seed of ``client`` in ``round_``."""
    return int(np.random.SeedSequence([seed, 3, round_, client]).generate_state(1)[0])


def sample_clients(scenario: Scenario, rng: np.random.Generator) -> list[int]:
    """This round's clients: a fixed-size sample without replacement, or Poisson with rate q."""
    n = scenario.data.num_clients
    if scenario.run.sampling == "poisson":
        return [int(c) for c in np.flatnonzero(rng.random(n) < scenario.sample_rate)]
    return sorted(int(c) for c in rng.choice(n, size=scenario.clients_per_round, replace=False))


class RunSetup:
    """What the rounds of one run share (built and checked before any training)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario = scenario.with_noise_solved()
        self.config, self.seed = scenario.resolved(), scenario.run.seed
        self.pipeline: Pipeline = scenario.build_pipeline()
        self.ledger: Ledger | None = scenario.ledger(self.pipeline)
        data = self.data = load_dataset(scenario.data.dataset, seed=self.seed,
                                        test_fraction=scenario.data.test_fraction, **scenario.data.options)
        if scenario.data.public:
            data = self.data = hold_out_public(data, scenario.data.public, seed=self.seed)
        part = scenario.data.partition
        extra = {k: v for k, v in (("alpha", part.alpha), ("shards_per_client", part.shards_per_client))
                 if v is not None}
        if part.kind == "natural":
            if data.natural_clients is None:
                raise ConfigurationError(f"partition kind 'natural': dataset {scenario.data.dataset!r} has no owner "
                                         "ids (natural_clients); choose another partition kind")
            extra["natural"] = data.natural_clients
        self.shards = partition(data.y_train, num_clients=scenario.data.num_clients, kind=part.kind,
                                rng=np.random.default_rng([self.seed, 1]), min_per_client=part.min_per_client, **extra)
        self.model = build_model(scenario.model.kind, input_shape=data.input_shape, num_classes=data.num_classes,
                                 seed=self.seed, **scenario.model.options)
        server = scenario.server
        self.optimizer = (torch.optim.Adam(self.model.parameters(), lr=server.lr, betas=tuple(server.betas),
                                           eps=server.eps)
                          if server.optimizer == "adam" else
                          torch.optim.SGD(self.model.parameters(), lr=server.lr, momentum=server.momentum))
        client = scenario.client
        self.hyper = Hyper(epochs=client.epochs, batch_size=client.batch_size, lr=client.lr,
                           momentum=client.momentum, weight_decay=client.weight_decay)
        method = registry.resolve("method", scenario.method)(scenario, self.model)
        self.trainer = method.trainer()
        if client.dp_sgd is not None and not self.trainer.supports_dp:
            raise ConfigurationError(f"client.dp_sgd: the {self.trainer.name!r} trainer cannot run under DP-SGD")
        self.hooks: list[RoundHook] = list(method.hooks())
        self.releases = method.releases(scenario, method.options)
        if scenario.attack is not None:
            self.hooks.append(Adversary(scenario.attack, num_clients=scenario.data.num_clients, seed=self.seed,
                                        num_classes=data.num_classes, trigger_value=float(data.x_train.max())))
        aggregator = self.pipeline.aggregator
        self.reshapes = method.reshapes(scenario, method.options)
        if aggregator.needs_reference:  # e.g. FLTrust: the server's own update on its root data
            server_id = scenario.data.num_clients  # its training seed: that of a client id no client has
            self.hooks.insert(0, ServerReference(aggregator.reference_size, self.hyper,
                                                 lambda r: client_seed(self.seed, r, server_id)))
        self.client_state: dict[int, dict[str, Any]] = {}
        self.client_metrics: dict[str, list[float]] = {}
        self.refusals: list[int] = []  # the clients of this round that refused the model (client.model_check)
        self.transport: Any = None  # how rounds train and sum: set by engine.run

    def charge(self, record: dict[str, Any]) -> None:
        """Put one recorded one-time release (a ``releases.jsonl`` line) in the ledger, if the run has one."""
        if record["release"] not in self.releases:
            raise ConfigurationError(f"the run directory records a release {record['release']!r} this method does "
                                     "not make; start the run afresh (without --resume)")
        if self.ledger is not None:
            self.ledger.record_once(*self.releases[record["release"]][:2])

    def released(self, name: str, round_: int) -> dict[str, Any]:
        """The record of release ``name`` made in ``round_``, with its own epsilon (alone, at the run's delta)."""
        if name not in self.releases:
            raise ConfigurationError(f"a hook released {name!r}, which the method does not declare (Method.releases)")
        event, server_event, _ = self.releases[name]
        accountant, delta = self.scenario.accountant(), self.scenario.privacy.delta
        alone = [accountant.epsilon_of([], sample_rate=1.0, delta=delta, unsampled=[(e, 1)])
                 for e in (event, server_event)]
        return {"round": round_, "release": name, "epsilon": alone[0], "epsilon_server": alone[1]}

    def checkpoint(self, round_: int) -> dict[str, Any]:
        """The resume point after ``round_`` (tensors, numbers, lists and dicts only: loaded with weights_only)."""
        return {"round": round_, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "clients": {int(c): s for c, s in self.client_state.items()},
                "hooks": [hook.state_dict() for hook in self.hooks]}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Load a checkpoint written by ``checkpoint`` for the same scenario."""
        hooks = checkpoint.get("hooks")
        if "clients" not in checkpoint or not isinstance(hooks, list) or len(hooks) != len(self.hooks):
            raise ConfigurationError("the run's checkpoint was written by another secfl version or set of hooks; "
                                     "start the run afresh (without --resume)")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.client_state = {int(c): dict(s) for c, s in checkpoint["clients"].items()}
        for hook, state in zip(self.hooks, hooks, strict=True):
            if state is not None:
                hook.load_state_dict(state)


def account(ledger: Ledger, pipeline: Pipeline, contributors: int | None, shares: int | None,
            sampled: list[int]) -> dict[str, float]:
    """Record one round for both observers; return its ``epsilon`` (against those who see only the
    released models; sampling secret), ``epsilon_server`` (against the aggregation server, which knows
    who took part: no amplification) and ``epsilon_server_rounds`` (the most rounds one client took part in)."""
    ledger.record(pipeline.dp_event(contributors, shares), participants=sampled,
                  server_event=pipeline.server_dp_event(contributors, shares))
    return {"epsilon": ledger.epsilon(), "epsilon_server": ledger.epsilon_server(),
            "epsilon_server_rounds": ledger.server_rounds}


def summarize(setup: RunSetup, run_dir: RunDir, stopped: str | None = None) -> dict[str, Any]:
    """Write and return the run's ``summary.json`` from the metrics on disk."""
    rows, ledger = run_dir.metrics(), setup.ledger
    summary = {
        "name": setup.scenario.name,
        "rounds": len(rows),
        "final_accuracy": rows[-1]["accuracy"] if rows else None,
        "best_accuracy": max((r["accuracy"] for r in rows), default=None),
        "final_loss": rows[-1]["loss"] if rows else None,
        "bytes_up_total": sum(r["bytes_up"] for r in rows),
        "bytes_down_total": sum(r["bytes_down"] for r in rows),
        "seconds_total": sum(r["seconds"] for r in rows),
        "num_params": num_params(setup.model),
        "pipeline": repr(setup.pipeline),
    }
    if ledger is not None:
        summary.update({"epsilon": ledger.epsilon(),  # the released models (rounds and one-time releases)
                        "epsilon_server": ledger.epsilon_server(),  # the aggregation server (knows the sample)
                        "epsilon_server_rounds": ledger.server_rounds, "delta": ledger.delta,
                        "accountant": repr(ledger.accountant), "sample_rate": ledger.sample_rate})
    if releases := run_dir.releases():
        summary["releases"] = releases
    if stopped is not None:
        summary["stopped"] = stopped
    run_dir.write_summary(summary)
    return summary
