"""The server round loop of the embedded engine: sample, train locally, securely aggregate, step, evaluate.

The engine knows no method, attack or audit by name: the scenario's method gives the local trainer and round
hooks (``secfl.hooks``), attacks and audits add hooks of their own, and the pipeline (checked once, never
replaced) does the stages, the secure sum and the robust aggregation.

Each round's randomness is derived from (seed, round) alone, so a run resumed from the checkpoint of round r
replays rounds r+1.. exactly as an uninterrupted run would: the checkpoint holds the model, the server
optimizer, every client's state (e.g. worker momentum, DP-SGD accountants) and every hook's state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError, PrivacyBudgetExceededError
from secfl.fl.model_check import check_model
from secfl.runs import RunDir
from secfl.fl.params import num_params
from secfl.hooks import FixedUpdates, Observer, RoundContext, RoundHook, RoundSeen
from secfl.protocols.binding import model_context
from secfl.run_setup import RunSetup, account, client_seed, sample_clients, summarize
from secfl.scenario import Scenario
from secfl.training import DpSgd, DpSgdConfig, Task, evaluate
from secfl.types import Update

__all__ = ["run", "embedded", "Transport", "RoundSeen", "client_seed", "sample_clients", "set_pseudo_gradient"]


#: How a round's clients train and are securely summed: ``(setup, ctx, rng) -> (RoundOutput, [(loss, n)])``.
Transport = Callable[[RunSetup, RoundContext, np.random.Generator], tuple[Any, list[tuple[float, int]]]]


def embedded(setup: RunSetup, ctx: RoundContext, rng: np.random.Generator) -> tuple[Any, list[tuple[float, int]]]:
    """The in-process transport: every sampled client trains here, then the pipeline's secure sum, each
    client bound to the model it received (``secfl.protocols.binding``; here the same model for all)."""
    bound = setup.pipeline.protocol.binds_model
    context = model_context({n: p.detach().cpu().numpy() for n, p in ctx.model.named_parameters()}) if bound else None
    updates, losses = _updates(setup, ctx)
    if len(updates) < setup.pipeline.min_clients:  # clients refused the model: abort, never sum fewer
        raise InsufficientParticipantsError(
            f"round {ctx.round}: {len(setup.refusals)} of {len(ctx.sampled)} clients refused the model "
            f"(client.model_check); {len(updates)} left, the round needs {setup.pipeline.min_clients}")
    contexts = {u.client_id: context for u in updates} if bound else None
    return setup.pipeline.run_round(updates, rng=rng, reference=ctx.reference, contexts=contexts), losses


def run(scenario: Scenario, run_dir: RunDir, *, resume: bool = False,
        on_round: Callable[[dict[str, Any]], None] | None = None, observer: Callable[[RoundSeen], None] | None = None,
        fixed_updates: Mapping[int, np.ndarray] | None = None, hooks: Sequence[RoundHook] = (),
        transport: Transport | None = None) -> dict[str, Any]:
    """Run (or resume) a scenario, writing every finished round to ``run_dir``; return the summary.

    ``hooks`` join the method's and the attack's; ``observer`` (audits) is called every round with what the
    round produced, after the secure sum and before the server step; ``fixed_updates`` (audit canaries) maps
    client ids to the update vector that client sends whenever it is sampled, instead of training.
    ``transport`` runs each round's training and secure sum elsewhere (e.g. Flower nodes:
    ``secfl.integrations.flower``); the default trains every client in this process.

    Raises:
        ConfigurationError: a bad scenario (caught before any training), or a resume that does not match.
        ProtocolError: a secure-sum round that cannot complete.
    """
    setup = RunSetup(scenario)
    if transport is not None and fixed_updates:  # canaries are in-process clients: a transport would skip them
        raise ConfigurationError("fixed updates (audit canaries) need the embedded engine, not a transport")
    if transport is not None and scenario.client.model_check:
        raise ConfigurationError("client.model_check runs in the embedded engine's clients, not over a transport")
    setup.transport = transport if transport is not None else embedded
    if scenario.attack is not None and fixed_updates:
        raise ConfigurationError("fixed updates (audit canaries) and [attack] cannot be combined in one run")
    if fixed_updates and setup.reshapes:
        raise ConfigurationError(f"fixed updates (audit canaries) are model deltas; method {scenario.method!r} sends "
                                 "other vectors in this scenario")
    canaries = [FixedUpdates(fixed_updates, scenario.data.num_clients)] if fixed_updates else []
    watchers = [Observer(observer)] if observer is not None else []
    setup.hooks = [*canaries, *setup.hooks, *watchers, *hooks]  # canaries answer first; callers' hooks last
    done, checkpoint = run_dir.resume(setup.config) if resume else (0, None)
    if not resume:
        run_dir.start(setup.config, seed=setup.seed)
    if checkpoint is not None:
        setup.restore(checkpoint)
    for record in run_dir.releases():  # one-time releases, re-runs after a resume included: each one counts
        setup.charge(record)
    if setup.ledger is not None:  # the claim so far, rebuilt from what was written, not from memory
        for row in [*run_dir.replayed(), *run_dir.metrics()]:  # a replayed round was released twice: both count
            account(setup.ledger, setup.pipeline, row.get("dp_contributors"), row.get("dp_shares"),
                    sample_clients(setup.scenario, np.random.default_rng([setup.seed, 2, row["round"]])))
    try:
        for round_ in range(done + 1, setup.scenario.run.rounds + 1):
            row = _round(setup, round_, run_dir)
            run_dir.append_metrics(row)
            run_dir.save_checkpoint(setup.checkpoint(round_))
            if on_round is not None:
                on_round(row)
    except PrivacyBudgetExceededError as exc:
        summarize(setup, run_dir, stopped=str(exc))
        raise
    return summarize(setup, run_dir)


def set_pseudo_gradient(model: torch.nn.Module, delta: np.ndarray) -> None:
    """Store -delta as the gradient of the model's parameters (flatten order) for the server step."""
    offset = 0
    for _, param in model.named_parameters():
        chunk = delta[offset : offset + param.numel()]
        param.grad = -torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).view_as(param)
        offset += param.numel()


def _train(setup: RunSetup, ctx: RoundContext, cid: int) -> tuple[Update, tuple[float, int]] | None:
    """One client's local training through the method's trainer (and DP-SGD if configured); None if the client
    refuses the model (``client.model_check``)."""
    scenario, idx = setup.scenario, setup.shards[cid]
    x, y = setup.data.x_train[idx], setup.data.y_train[idx]
    for hook in setup.hooks:
        x, y = hook.client_data(ctx, cid, x, y)
    if scenario.client.model_check and len(y) and check_model(ctx.model, x, y):
        setup.refusals.append(cid)
        return None
    dp = scenario.client.dp_sgd
    privacy = None if dp is None else DpSgd(DpSgdConfig(noise_multiplier=dp.noise_multiplier, delta=dp.delta,
                                                         max_grad_norm=dp.max_grad_norm,
                                                         grad_sample_mode=dp.grad_sample_mode))
    task = Task(ctx.model, x, y, client_seed(setup.seed, ctx.round, cid), setup.hyper,
                state=setup.client_state.get(cid, {}), public=ctx.public, client_id=cid, round=ctx.round)
    result = setup.trainer.train(task, privacy)
    if result.state:
        setup.client_state[cid] = dict(result.state)
    vector = result.delta
    for hook in setup.hooks:
        vector = hook.client_vector(ctx, cid, result, vector)
    for key, value in result.metrics.items():
        setup.client_metrics.setdefault(key, []).append(value)
    return Update(cid, vector, weight=float(result.num_examples)), (result.loss, result.loss_examples or
                                                                    result.num_examples)


def _updates(setup: RunSetup, ctx: RoundContext) -> tuple[list[Update], list[tuple[float, int]]]:
    """Every sampled client's update in ``sampled`` order: supplied by a hook, trained, or forged."""
    updates: dict[int, Update] = {}
    losses = []
    for cid in ctx.sampled:
        supplied = next((u for h in setup.hooks if (u := h.supplied(ctx, cid)) is not None), None)
        if supplied is not None:
            updates[cid] = supplied
        elif not any(h.skips_training(ctx, cid) for h in setup.hooks):
            trained = _train(setup, ctx, cid)
            if trained is not None:
                updates[cid], loss = trained
                losses.append(loss)
    for hook in setup.hooks:
        updates = hook.round_updates(ctx, updates)
    return [updates[cid] for cid in ctx.sampled if cid not in setup.refusals], losses


def _round(setup: RunSetup, round_: int, run_dir: RunDir) -> dict[str, Any]:
    """Run one round (privacy budget checked first) and return its metrics row."""
    pipeline, ledger, model, data = setup.pipeline, setup.ledger, setup.model, setup.data
    start = time.perf_counter()
    if ledger is not None:
        ledger.check(pipeline.dp_event())
    rng = np.random.default_rng([setup.seed, 2, round_])
    sampled = sample_clients(setup.scenario, rng)
    k = len(sampled)
    row: dict[str, Any] = {"round": round_}
    if k < pipeline.min_clients:  # a Poisson round too small for the protocol: nothing is released
        row["accuracy"], row["loss"] = evaluate(model, data.x_test, data.y_test)
        row.update({"train_loss": None, "bytes_up": 0.0, "bytes_down": 0.0, "seconds": time.perf_counter() - start,
                    "clients": k, "groups": 0})
        if ledger is not None:  # accounted as a full round anyway (conservative)
            row.update(account(ledger, pipeline, None, None, sampled))
        return row
    def release(name: str) -> None:
        record = setup.released(name, round_)
        if ledger is not None:  # the release and this round together must fit the budget
            ledger.check(pipeline.dp_event(), once=[setup.releases[name][0]])
        run_dir.append_release(record)  # durable before the release happens: a crash cannot lose its cost
        setup.charge(record)

    ctx = RoundContext(round_, setup.seed, model, sampled, data, setup.shards, pipeline, hooks=setup.hooks,
                       release=release)
    for hook in setup.hooks:
        hook.before_round(ctx)
    setup.client_metrics, setup.refusals = {}, []
    ctx.output, losses = setup.transport(setup, ctx, rng)
    out = ctx.output
    for hook in setup.hooks:
        hook.after_sum(ctx)
    delta = out.aggregate
    for hook in setup.hooks:
        delta = hook.server_delta(ctx, delta)
    setup.optimizer.zero_grad(set_to_none=True)
    set_pseudo_gradient(model, delta)
    setup.optimizer.step()
    for hook in setup.hooks:
        hook.after_step(ctx)
    row["accuracy"], row["loss"] = evaluate(model, data.x_test, data.y_test)
    seen = [(loss, n) for loss, n in losses if loss == loss]  # a DP-SGD client with no example drawn has NaN
    measure = out.measurements
    row.update({
        "train_loss": sum(loss * n for loss, n in seen) / sum(n for _, n in seen) if seen else None,
        "bytes_up": _sum_measure(measure, "bytes_up"),
        "bytes_down": 4.0 * num_params(model) * k + _sum_measure(measure, "bytes_down"),
        "seconds": time.perf_counter() - start, "clients": k, "groups": int(measure["pipeline/groups"])})
    if ledger is not None:
        row["dp_contributors"], row["dp_shares"] = int(measure["dp/contributors"]), int(measure["dp/shares"])
        if "dp/noise_multiplier" in measure:
            row["noise_multiplier"] = measure["dp/noise_multiplier"]
        row.update(account(ledger, pipeline, row["dp_contributors"], row["dp_shares"], sampled))
    for hook in setup.hooks:
        hook.metrics(ctx, row)
    epsilons = [s["epsilon"] for s in setup.client_state.values() if "epsilon" in s]
    if epsilons:
        row["client_epsilon"] = max(epsilons)
    row["bytes_up_per_client"], row["bytes_down_per_client"] = row["bytes_up"] / k, row["bytes_down"] / k
    if setup.scenario.client.model_check:
        row["model_refusals"] = len(setup.refusals)
    for key, values in setup.client_metrics.items():  # e.g. FedBAT's uplink bits per honest client
        row[key] = sum(values) / len(values)
    return row


def _sum_measure(measurements: Mapping[str, float], metric: str) -> float:
    return float(sum(v for k, v in measurements.items() if k.endswith(f"/{metric}")))
