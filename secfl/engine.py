"""The server round loop of the embedded engine: sample, train locally, aggregate, step, evaluate.

Each round's randomness is derived from (seed, round) alone, so a run resumed from the checkpoint
of round r replays rounds r+1.. exactly as an uninterrupted run would: the checkpoint needs only the
model and the server optimizer, no RNG state.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from secfl.attacks.byzantine import Adversary
from secfl.fl.client import evaluate, local_train
from secfl.fl.gradient import gradient_step
from secfl.fl.data import Dataset, load_dataset
from secfl.fl.dpsgd import DpSgdConfig, dp_local_train
from secfl.methods.fedbat import fedbat_local_train
from secfl.methods.fedbat_dpsgd import fedbat_dp_local_train
from secfl.methods.fedbat_secure import SecureFedBat
from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.fl.partition import partition
from secfl.aggregators import Chain, FLTrust
from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError
from secfl.pipeline import Pipeline, RoundOutput
from secfl.privacy import Ledger
from secfl.runs import RunDir
from secfl.scenario import Scenario
from secfl.types import Update


def client_seed(seed: int, round_: int, client: int) -> int:
    """The local-training seed of ``client`` in ``round_``."""
    return int(np.random.SeedSequence([seed, 3, round_, client]).generate_state(1)[0])


def set_pseudo_gradient(model: torch.nn.Module, delta: np.ndarray) -> None:
    """Store -delta as the gradient of the model's parameters (flatten order) for the server step."""
    offset = 0
    for _, param in model.named_parameters():
        chunk = delta[offset : offset + param.numel()]
        param.grad = -torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).view_as(param)
        offset += param.numel()


def _sum_measure(measurements: dict[str, float], metric: str) -> float:
    return float(sum(v for k, v in measurements.items() if k.endswith(f"/{metric}")))


def run(
    scenario: Scenario,
    run_dir: RunDir,
    *,
    resume: bool = False,
    on_round: Callable[[dict[str, Any]], None] | None = None,
    observer: Callable[[RoundSeen], None] | None = None,
    fixed_updates: Mapping[int, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a scenario, writing every finished round to ``run_dir``; return the summary.

    ``observer`` (audits) is called every round with what the round produced, after the secure sum and
    before the server step. ``fixed_updates`` (audit canaries) maps client ids to the update vector
    that client sends whenever it is sampled, instead of training on its data.

    Raises:
        ConfigurationError: a bad scenario (caught before any training), or a resume that does
            not match the stored run.
        ProtocolError: a secure-sum round that cannot complete.
    """
    scenario = scenario.with_noise_solved()
    config, seed = scenario.resolved(), scenario.run.seed
    pipeline = scenario.build_pipeline()
    ledger = scenario.ledger(pipeline)
    data = load_dataset(scenario.data.dataset, seed=seed, test_fraction=scenario.data.test_fraction,
                        **scenario.data.options)
    part = scenario.data.partition
    extra = {k: v for k, v in (("alpha", part.alpha), ("shards_per_client", part.shards_per_client)) if v is not None}
    if part.kind == "natural":
        extra["natural"] = data.natural_clients
    shards = partition(data.y_train, num_clients=scenario.data.num_clients, kind=part.kind,
                       rng=np.random.default_rng([seed, 1]), min_per_client=part.min_per_client, **extra)
    model = build_model(scenario.model.kind, input_shape=data.input_shape, num_classes=data.num_classes,
                        seed=seed, **scenario.model.options)
    optimizer = torch.optim.SGD(model.parameters(), lr=scenario.server.lr, momentum=scenario.server.momentum)

    done, checkpoint = run_dir.resume(config) if resume else (0, None)
    if not resume:
        run_dir.start(config, seed=seed)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    if ledger is not None:  # the claim so far, rebuilt from what was written, not from memory
        # a round replayed after a lost checkpoint was released twice: both releases count
        for row in [*run_dir.replayed(), *run_dir.metrics()]:  # who took part derives from (seed, round)
            _account(ledger, pipeline, row.get("dp_contributors"), row.get("dp_shares"),
                     sample_clients(scenario, np.random.default_rng([seed, 2, row["round"]])))

    d = num_params(model)
    state = _State(scenario, pipeline, ledger, model, optimizer, data, shards,
                   dict(checkpoint.get("dp_sgd", {})) if checkpoint is not None else {},
                   observer=observer, fixed=_check_fixed_ids(fixed_updates, scenario.data.num_clients))
    if scenario.attack is not None and state.fixed:
        raise ConfigurationError("fixed updates (audit canaries) and [attack] cannot be combined in one run")
    if scenario.attack is not None:
        state.adversary = Adversary(scenario.attack, num_clients=scenario.data.num_clients, seed=seed,
                                    num_classes=data.num_classes, trigger_value=float(data.x_train.max()))
    if checkpoint is not None:
        state.momentum = {int(c): m.numpy() for c, m in (checkpoint.get("momentum") or {}).items()}
    if scenario.secure_fedbat:
        bat = scenario.fedbat
        state.secure_fedbat = SecureFedBat(model, alpha_init=bat.alpha_init, update=bat.alpha_update,
                                           alpha_clamp=(bat.alpha_min, bat.alpha_max))
        if checkpoint is not None:
            state.secure_fedbat.load_state_dict(checkpoint["fedbat"])
    try:
        for round_ in range(done + 1, scenario.run.rounds + 1):
            row = _round(state, round_)
            run_dir.append_metrics(row)
            run_dir.save_checkpoint({"round": round_, "model": model.state_dict(),
                                     "optimizer": optimizer.state_dict(), "dp_sgd": state.dp_sgd,
                                     "fedbat": state.secure_fedbat.state_dict() if state.secure_fedbat else None,
                                     "momentum": {c: torch.from_numpy(m) for c, m in state.momentum.items()}})
            if on_round is not None:
                on_round(row)
    except PrivacyBudgetExceededError as exc:
        _summarize(scenario, run_dir, pipeline, ledger, d, stopped=str(exc))
        raise
    return _summarize(scenario, run_dir, pipeline, ledger, d)


@dataclass(frozen=True)
class RoundSeen:
    """One round as an omniscient auditor sees it: the live model before the server step (copy it to keep
    it), the sampled clients in order, the pipeline's ``RoundOutput`` (group means, the protocol's view, the
    aggregate), the dataset and every client's example indices (``shards``)."""

    round: int
    model: torch.nn.Module
    sampled: list[int]
    output: RoundOutput
    data: Dataset
    shards: list[np.ndarray]


def _check_fixed_ids(fixed: Mapping[int, np.ndarray] | None, num_clients: int) -> Mapping[int, np.ndarray]:
    """The ids are checked now; each vector when it is sent (a mapping may make them on demand)."""
    for cid in fixed or {}:
        if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)) or not 0 <= cid < num_clients:
            raise ConfigurationError(f"fixed update for client {cid!r}: pass ids in [0, {num_clients})")
    return fixed or {}


def _fixed_update(state: _State, cid: int) -> Update:
    v, d = np.asarray(state.fixed[cid]), num_params(state.model)
    if v.shape != (d,) or v.dtype.kind != "f" or not np.all(np.isfinite(v)):
        raise ConfigurationError(f"fixed update for client {cid}: pass a finite float vector of length {d}")
    return Update(cid, v, weight=float(max(len(state.shards[cid]), 1)))


def sample_clients(scenario: Scenario, rng: np.random.Generator) -> list[int]:
    """This round's clients: a fixed-size sample without replacement, or Poisson with rate q."""
    n = scenario.data.num_clients
    if scenario.run.sampling == "poisson":
        return [int(c) for c in np.flatnonzero(rng.random(n) < scenario.sample_rate)]
    return sorted(int(c) for c in rng.choice(n, size=scenario.clients_per_round, replace=False))


@dataclass
class _State:
    """What the rounds of one run share (dp_sgd: client id -> (Opacus accountant state, epsilon))."""

    scenario: Scenario
    pipeline: Pipeline
    ledger: Ledger | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    data: Dataset
    shards: list[np.ndarray]
    dp_sgd: dict[int, tuple[dict, float]]
    uplink_bits: list[int] = field(default_factory=list)  # FedBAT: each client's honest upload size this round
    secure_fedbat: SecureFedBat | None = None  # FedBAT's public alphas when its bits go through the sum
    adversary: Adversary | None = None  # the Byzantine clients, if the scenario has an attack
    momentum: dict[int, np.ndarray] = field(default_factory=dict)  # gradient mode: each client's worker momentum
    observer: Callable[[RoundSeen], None] | None = None
    fixed: Mapping[int, np.ndarray] = field(default_factory=dict)  # client id -> the update it always sends


def _train(state: _State, cid: int, round_: int) -> tuple[Update, float, int]:
    """One client's local training (DP-SGD if configured): its update, loss and example count."""
    scenario, idx = state.scenario, state.shards[cid]
    client = scenario.client
    kwargs = {"epochs": client.epochs, "batch_size": client.batch_size, "lr": client.lr,
              "momentum": client.momentum, "weight_decay": client.weight_decay,
              "seed": client_seed(scenario.run.seed, round_, cid)}
    x, y = state.data.x_train[idx], state.data.y_train[idx]
    if state.adversary is not None:  # a Byzantine data attacker trains on poisoned data
        x, y = state.adversary.poison(cid, x, y, np.random.default_rng([scenario.run.seed, 6, round_, cid]))
    if client.mode == "gradient":
        delta, state.momentum[cid], loss = gradient_step(
            state.model, x, y, batch_size=client.batch_size, lr=client.lr, seed=kwargs["seed"],
            momentum=client.momentum, buffer=state.momentum.get(cid), weight_decay=client.weight_decay)
        return Update(cid, _boost(state, cid, delta), weight=float(len(y))), loss, min(len(y), client.batch_size)
    if client.dp_sgd is not None:
        kwargs["config"] = DpSgdConfig(noise_multiplier=client.dp_sgd.noise_multiplier,
                                       max_grad_norm=client.dp_sgd.max_grad_norm,
                                       grad_sample_mode=client.dp_sgd.grad_sample_mode, delta=client.dp_sgd.delta)
        kwargs["accountant_state"] = state.dp_sgd.get(cid, (None, 0.0))[0]
    if scenario.method == "fedbat":
        bat, secure = scenario.fedbat, state.secure_fedbat
        kwargs.update(rho=0.0 if secure and secure.update == "fixed" else bat.rho,  # a fixed public alpha trains too
                      phi=bat.phi, alpha_clamp=(bat.alpha_min, bat.alpha_max),
                      alpha0=secure.public() if secure else None)
        local = (fedbat_local_train if client.dp_sgd is None else fedbat_dp_local_train)(state.model, x, y, **kwargs)
    else:
        local = (local_train if client.dp_sgd is None else dp_local_train)(state.model, x, y, **kwargs)
    if client.dp_sgd is not None:
        state.dp_sgd[cid] = (local.accountant_state, local.epsilon)
    if scenario.method == "fedbat" and state.secure_fedbat:  # m / alpha (+ proposals): fedbat_bits binarizes it
        return (Update(cid, state.secure_fedbat.client_vector(local), weight=float(local.num_examples)), local.loss,
                local.num_examples)
    if scenario.method == "fedbat":
        state.uplink_bits.append(local.uplink_bits)
    return Update(cid, _boost(state, cid, local.delta), weight=float(local.num_examples)), local.loss, local.num_examples


def _boost(state: _State, cid: int, delta: np.ndarray) -> np.ndarray:
    return delta if state.adversary is None else state.adversary.boost(cid, delta)


def _local_updates(state: _State, sampled: list[int], round_: int,
                   rng: np.random.Generator) -> tuple[list[Update], list[tuple[float, int]]]:
    """Every sampled client's update in ``sampled`` order: trained, or forged by an update attacker."""
    updates: dict[int, Update] = {}
    losses = []
    adversary = state.adversary
    for cid in sampled:
        if cid in state.fixed:
            updates[cid] = _fixed_update(state, cid)
        elif adversary is None or adversary.trains(cid):
            updates[cid], local_loss, count = _train(state, cid, round_)
            losses.append((local_loss, count))
    if adversary is not None:
        byzantine = [cid for cid in sampled if not adversary.trains(cid)]
        honest = [updates[cid] for cid in sampled if not adversary.is_byzantine(cid)]
        rule = state.pipeline.aggregator
        forged = adversary.forge(honest, byzantine, rng=rng, aggregator=lambda v: copy.deepcopy(rule)(v))
        updates.update((u.client_id, u) for u in forged)
    return [updates[cid] for cid in sampled], losses


def _round(state: _State, round_: int) -> dict[str, Any]:
    """Run one round (privacy budget checked first) and return its metrics row."""
    scenario, pipeline, ledger, model, optimizer, data = (state.scenario, state.pipeline, state.ledger, state.model,
                                                          state.optimizer, state.data)
    start, seed = time.perf_counter(), scenario.run.seed
    if ledger is not None:
        ledger.check(pipeline.dp_event())
    rng = np.random.default_rng([seed, 2, round_])
    sampled = sample_clients(scenario, rng)
    d, k = num_params(model), len(sampled)
    if k < pipeline.min_clients:  # a Poisson round too small for the protocol: nothing is released
        accuracy, loss = evaluate(model, data.x_test, data.y_test)
        row = {"round": round_, "accuracy": accuracy, "loss": loss, "train_loss": None, "bytes_up": 0.0,
               "bytes_down": 0.0, "seconds": time.perf_counter() - start, "clients": k, "groups": 0}
        if ledger is not None:  # accounted as a full round anyway (conservative)
            row.update(_account(ledger, pipeline, None, None, sampled))
        return row
    state.uplink_bits.clear()
    updates, losses = _local_updates(state, sampled, round_, np.random.default_rng([seed, 7, round_]))
    if isinstance(_rule(pipeline.aggregator), FLTrust):
        _set_fltrust_reference(state, round_)
    out = pipeline.run_round(updates, rng=rng)
    if state.observer is not None:
        state.observer(RoundSeen(round_, model, sampled, out, data, state.shards))
    optimizer.zero_grad(set_to_none=True)
    alphas = state.secure_fedbat.public() if state.secure_fedbat else None  # the alphas this round used
    set_pseudo_gradient(model, state.secure_fedbat.server_delta(out.aggregate) if alphas else out.aggregate)
    optimizer.step()
    accuracy, loss = evaluate(model, data.x_test, data.y_test)
    row = {
        "round": round_,
        "accuracy": accuracy,
        "loss": loss,
        "train_loss": _mean_loss(losses),
        "bytes_up": _sum_measure(out.measurements, "bytes_up"),
        "bytes_down": 4.0 * d * k + _sum_measure(out.measurements, "bytes_down"),
        "seconds": time.perf_counter() - start,
        "clients": k,
        "groups": int(out.measurements["pipeline/groups"]),
    }
    if ledger is not None:
        row["dp_contributors"] = int(out.measurements["dp/contributors"])
        row["dp_shares"] = int(out.measurements["dp/shares"])
        if "dp/noise_multiplier" in out.measurements:
            row["noise_multiplier"] = out.measurements["dp/noise_multiplier"]
        row.update(_account(ledger, pipeline, row["dp_contributors"], row["dp_shares"], sampled))
    if state.adversary is not None:
        row["byzantine"] = sum(state.adversary.is_byzantine(cid) for cid in sampled)
        row.update(state.adversary.metrics(model, data.x_test, data.y_test))
    if state.dp_sgd:
        row["client_epsilon"] = max(eps for _, eps in state.dp_sgd.values())
    row["bytes_up_per_client"], row["bytes_down_per_client"] = row["bytes_up"] / k, row["bytes_down"] / k
    if alphas:
        row["fedbat_alphas"] = list(alphas.values())
    if state.uplink_bits:  # what FedBAT's upload needs (1 bit per binarized weight); the wire above sends floats
        row["fedbat_uplink_bits"] = sum(state.uplink_bits) / len(state.uplink_bits)
    return row


def _account(ledger: Ledger, pipeline: Pipeline, contributors: int | None, shares: int | None,
             sampled: list[int]) -> dict[str, float]:
    """Record one round for both observers; return its ``epsilon`` (against those who see only the
    released models; sampling secret), ``epsilon_server`` (against the aggregation server, which knows
    who took part: no amplification) and ``epsilon_server_rounds`` (the most rounds one client took part in)."""
    ledger.record(pipeline.dp_event(contributors, shares), participants=sampled,
                  server_event=pipeline.server_dp_event(contributors, shares))
    return {"epsilon": ledger.epsilon(), "epsilon_server": ledger.epsilon_server(),
            "epsilon_server_rounds": ledger.server_rounds}


def _rule(aggregator: Any) -> Any:
    return aggregator.rule if isinstance(aggregator, Chain) else aggregator


def _set_fltrust_reference(state: _State, round_: int) -> None:
    """FLTrust: the server trains on its root data (root_size training examples, fixed by the seed)
    from the current model, and that update becomes this round's reference g0."""
    scenario, aggregator = state.scenario, state.pipeline.aggregator
    rule = _rule(aggregator)
    count = min(rule.root_size, len(state.data.y_train))
    root = np.random.default_rng([scenario.run.seed, 4]).choice(len(state.data.y_train), size=count, replace=False)
    client, server_id = scenario.client, scenario.data.num_clients  # no client has this id
    local = local_train(state.model, state.data.x_train[root], state.data.y_train[root], epochs=client.epochs,
                        batch_size=client.batch_size, lr=client.lr, momentum=client.momentum,
                        weight_decay=client.weight_decay, seed=client_seed(scenario.run.seed, round_, server_id))
    configured = rule.with_reference(local.delta)
    state.pipeline.aggregator = Chain(configured, aggregator.pre) if isinstance(aggregator, Chain) else configured


def _mean_loss(losses: list[tuple[float, int]]) -> float | None:
    """Example-weighted mean of the clients' losses (a DP-SGD client with no example drawn has NaN)."""
    seen = [(loss, n) for loss, n in losses if loss == loss]
    return sum(loss * n for loss, n in seen) / sum(n for _, n in seen) if seen else None


def _summarize(scenario: Scenario, run_dir: RunDir, pipeline: Pipeline, ledger: Ledger | None, d: int,
               stopped: str | None = None) -> dict[str, Any]:
    rows = run_dir.metrics()
    summary = {
        "name": scenario.name,
        "rounds": len(rows),
        "final_accuracy": rows[-1]["accuracy"] if rows else None,
        "best_accuracy": max((r["accuracy"] for r in rows), default=None),
        "final_loss": rows[-1]["loss"] if rows else None,
        "bytes_up_total": sum(r["bytes_up"] for r in rows),
        "bytes_down_total": sum(r["bytes_down"] for r in rows),
        "seconds_total": sum(r["seconds"] for r in rows),
        "num_params": d,
        "pipeline": repr(pipeline),
    }
    if ledger is not None:
        summary.update({"epsilon": rows[-1].get("epsilon") if rows else 0.0,  # the released models
                        "epsilon_server": ledger.epsilon_server(),  # the aggregation server (knows the sample)
                        "epsilon_server_rounds": ledger.server_rounds, "delta": ledger.delta,
                        "accountant": repr(ledger.accountant), "sample_rate": ledger.sample_rate})
    if stopped is not None:
        summary["stopped"] = stopped
    run_dir.write_summary(summary)
    return summary
