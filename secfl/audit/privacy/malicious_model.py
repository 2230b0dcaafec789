"""A malicious server attacks through the model it sends, for one round run for real through a scenario's pipeline.

Two attacks (``secfl.audit.privacy.imprint`` builds the models and reconstructs):

- ``trap_weights`` (Fowl et al., ICLR 2022): every client of the round receives one common imprint model.
  The server reconstructs examples from every group sum it decodes; the truth is every client's batch.
- ``inconsistency`` (Pasquini, Francati, Ateniese, CCS 2022): the target (the first client drawn) receives
  the imprint model, every other client the dead model, whose update is zero: without protection the
  group's sum is the target's update. The truth is the target's batch.

The round is FedSGD, as in both papers: each of ``clients`` clients drawn from the scenario's partition takes
ONE gradient step (the scenario's ``client.lr``, no momentum or weight decay) on a batch of its own examples
(``batch_size``, default the scenario's) and sends the model delta, weighted by its batch size, through the
scenario's REAL pipeline (``Pipeline.run_round``: its clipping, noise, quantization and secure sum per
group). The server decodes each group's sum (mean times total weight) and runs ``imprint.recover`` on it.
With ``binding`` each client passes ``model_context`` of the model IT received, so under SecAgg/SecAgg+ the
members of a group that received different models cannot complete one instance together; a round the
protocol refuses releases nothing and counts as 0 recovered (``refused`` says why). Plaintext and HE do not
bind: the server sees what it would see anyway. With ``model_check`` (default: the scenario's
``client.model_check``) each client first runs ``secfl.fl.model_check.check_model`` on the model it received
and its own examples, as the engine's clients do; a client that refuses sends nothing, and a round left with
fewer clients than the pipeline needs is refused.

Threat model: the server crafts the models and knows the pipeline (it is public) and its own public data;
it does not see individual updates inside a secure sum. What this measures is one attack's success, not a
bound: an adaptive server (denoising, more bins, several rounds) may do better against noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl import registry
from secfl.audit.privacy.image_metrics import Normalization
from secfl.audit.privacy.imprint import DEFAULT_THRESHOLD, ImprintNet, dead_model, imprint_model, recover, score
from secfl.exceptions import ConfigurationError, InsufficientParticipantsError, ProtocolError
from secfl.fl.model_check import check_model
from secfl.fl.data import Dataset
from secfl.run_setup import RunSetup
from secfl.scenario import NEEDS_DIM, Scenario
from secfl.types import Update

__all__ = ["ATTACKS", "MaliciousRound", "Outcome", "audit_malicious_model", "population", "run_malicious_round"]

ATTACKS = ("trap_weights", "inconsistency")


@dataclass(frozen=True)
class MaliciousRound:
    """One attacked round: ``attack`` (``ATTACKS``) on ``clients`` clients, an imprint layer of ``bins`` units,
    batches of ``batch_size`` (None: the scenario's), with or without the model ``binding``; a true example
    counts as recovered at PSNR >= ``threshold`` dB."""

    attack: str
    clients: int
    bins: int = 128
    batch_size: int | None = None
    binding: bool = False
    model_check: bool | None = None
    threshold: float = DEFAULT_THRESHOLD
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ConfigurationError(f"attack={self.attack!r} is unknown; choose one of {', '.join(ATTACKS)}")
        for name, low in (("clients", 1), ("bins", 1), ("seed", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer >= {low}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise ConfigurationError(f"batch_size={self.batch_size!r} is invalid; pass None or an integer >= 1")
        if not isinstance(self.binding, bool):
            raise ConfigurationError(f"binding={self.binding!r} must be True or False")
        if self.model_check is not None and not isinstance(self.model_check, bool):
            raise ConfigurationError(f"model_check={self.model_check!r} must be None (the scenario's), True or False")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigurationError(f"threshold={self.threshold!r} must be a finite number of dB > 0")


@dataclass
class Outcome:
    """``summary`` (JSON-ready) and, unless refused, the pictures: true examples, their best reconstructions."""

    summary: dict[str, Any]
    truth: np.ndarray = field(default_factory=lambda: np.zeros(0))
    matched: np.ndarray = field(default_factory=lambda: np.zeros(0))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    best_psnr: np.ndarray = field(default_factory=lambda: np.zeros(0))


def population(scenario: Scenario) -> tuple[Dataset, list[np.ndarray]]:
    """The scenario's data and its clients' shards, exactly as the engine partitions them."""
    setup = RunSetup(scenario)
    return setup.data, list(setup.shards)


def _check_scenario(scenario: Scenario) -> None:
    method = registry.resolve("method", scenario.method)
    if method.reshapes(scenario, scenario.method_options()) or scenario.method != "fedavg":
        raise ConfigurationError(f"{scenario.name}: method {scenario.method!r}: the malicious-model attacks need "
                                 "clients that send model deltas (method = \"fedavg\")")
    sized = [s["kind"] for s in scenario.stages if s.get("kind") in NEEDS_DIM]
    if sized:
        raise ConfigurationError(f"{scenario.name}: stage {sized[0]!r} is sized to the scenario's model; the crafted "
                                 "model has another size (not supported)")


def _fedsgd_delta(model: ImprintNet, x: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """-lr x the gradient of the batch's mean cross-entropy, flattened in ``named_parameters`` order."""
    loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return (-lr * torch.cat([g.reshape(-1) for g in grads])).detach().numpy().astype(np.float32)


def _contexts(received: dict[int, torch.nn.Module]) -> dict[int, bytes]:
    """Each client's binding: ``model_context`` of the parameter arrays of the model IT received."""
    from secfl.protocols.binding import model_context

    return {c: model_context({n: p.detach().numpy().copy() for n, p in m.named_parameters()})
            for c, m in received.items()}


def run_malicious_round(scenario: Scenario, spec: MaliciousRound, *,
                        data: tuple[Dataset, list[np.ndarray]] | None = None) -> Outcome:
    """Run ``spec`` against ``scenario``'s pipeline (noise solved from ``privacy.target_epsilon`` if set).

    Args:
        data: ``population(scenario)``, to reuse across calls (default: built here).

    Raises:
        ConfigurationError: a method or stage the attacks cannot run, more clients than the pipeline takes or
            than have examples, or a spec that is invalid.
    """
    if not isinstance(spec, MaliciousRound):
        raise ConfigurationError(f"spec is a {type(spec).__name__}; pass a MaliciousRound")
    _check_scenario(scenario)
    scenario = scenario.with_noise_solved()
    pipeline = scenario.build_pipeline()
    if spec.clients > pipeline.clients_per_round:
        raise ConfigurationError(f"{spec.clients} clients: the pipeline takes at most {pipeline.clients_per_round}")
    dataset, shards = data if data is not None else population(scenario)
    rng = np.random.default_rng([spec.seed, 22])
    eligible = [c for c, s in enumerate(shards) if len(s)]
    if spec.clients > len(eligible):
        raise ConfigurationError(f"{spec.clients} clients: only {len(eligible)} clients hold examples")
    chosen = [int(c) for c in rng.choice(eligible, size=spec.clients, replace=False)]
    public = dataset.x_public if dataset.x_public is not None else dataset.x_test
    shape, classes = tuple(dataset.input_shape), dataset.num_classes
    trap = imprint_model(shape, classes, bins=spec.bins, public_x=public)
    dead = dead_model(shape, classes, bins=spec.bins)
    received = {c: trap if spec.attack == "trap_weights" or i == 0 else dead for i, c in enumerate(chosen)}
    batch = spec.batch_size or scenario.client.batch_size
    check = scenario.client.model_check if spec.model_check is None else spec.model_check
    updates, batches, refusals = [], {}, []
    for cid in chosen:
        idx = rng.choice(shards[cid], size=min(batch, len(shards[cid])), replace=False)
        batches[cid] = idx
        if check and check_model(received[cid], dataset.x_train[shards[cid]], dataset.y_train[shards[cid]]):
            refusals.append(cid)  # as in the engine: a client that refuses the model sends nothing
            continue
        delta = _fedsgd_delta(received[cid], dataset.x_train[idx], dataset.y_train[idx], scenario.client.lr)
        updates.append(Update(cid, delta, weight=float(len(idx))))
    sent = {u.client_id: received[u.client_id] for u in updates}
    bind = {"contexts": _contexts(sent)} if spec.binding else {}
    targets = chosen if spec.attack == "trap_weights" else chosen[:1]
    truth_idx = np.concatenate([batches[c] for c in targets])
    norm = Normalization.infer(dataset.x_train)
    truth = np.clip(norm.to_pixels(dataset.x_train[truth_idx]), 0.0, 1.0)
    mean_image = np.clip(norm.to_pixels(public.mean(axis=0)), 0.0, 1.0)
    summary: dict[str, Any] = {
        "scenario": scenario.name, **asdict(spec), "batch_size": batch, "lr": scenario.client.lr,
        "binds": bool(getattr(pipeline.protocol, "binds_model", False)), "examples": int(len(truth_idx)),
        "examples_in_round": int(sum(len(b) for b in batches.values())), "target": chosen[0],
        "model_check": check, "model_refusals": refusals,
    }
    start = time.perf_counter()
    try:
        if len(updates) < pipeline.min_clients:  # as the engine: never sum fewer than the protocol needs
            raise InsufficientParticipantsError(f"{len(refusals)} of {len(chosen)} clients refused the model "
                                                f"(model check); {len(updates)} left, the round needs "
                                                f"{pipeline.min_clients}")
        out = pipeline.run_round(updates, rng=np.random.default_rng([spec.seed, 22, 1]), **bind)
    except ProtocolError as exc:  # InsufficientParticipantsError included: nothing is released
        base = score(np.zeros((0, *truth.shape[1:])), truth, threshold=spec.threshold, mean_image=mean_image)
        summary.update(base.summary, refused=f"{type(exc).__name__}: {exc}", fraction=0.0, recovered=0.0,
                       seconds=time.perf_counter() - start)
        return Outcome(summary)
    candidates = [recover(mean * weight, trap)[0] for mean, weight in zip(out.group_means, out.group_weights,
                                                                           strict=True)]
    pixels = np.clip(norm.to_pixels(np.concatenate(candidates)), 0.0, 1.0)
    result = score(pixels, truth, threshold=spec.threshold, mean_image=mean_image)
    survivors = [list(map(int, s)) for s in out.result.survivors]
    summary.update(result.summary, refused=None, groups=len(survivors),
                   largest_sum=max((len(s) for s in survivors), default=0),
                   target_in_sum=any(chosen[0] in s for s in survivors),
                   excluded=sorted(set(sent) - {c for s in survivors for c in s}),
                   noise_multiplier=out.measurements.get("dp/noise_multiplier"),
                   seconds=time.perf_counter() - start)
    matched = pixels[result.best] if len(pixels) else np.zeros_like(truth)
    return Outcome(summary, truth=truth, matched=matched, labels=dataset.y_train[truth_idx], best_psnr=result.best_psnr)


def audit_malicious_model(scenario: Scenario, out: Path, *, bins: int = 256, seed: int = 0,
                          threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Both attacks, without and with the model binding, on a round of the scenario's size (its
    ``clients_per_round``, the expected count under Poisson sampling) through its own pipeline; one PNG per
    attack that released anything (``<out>/malicious-<attack>[-bound].png``). A scenario the attacks cannot
    run gives ``{"skipped": reason}``."""
    from secfl.audit.privacy.malicious_report import save_grid

    try:
        _check_scenario(scenario)
    except ConfigurationError as exc:
        return {"skipped": str(exc)}
    scenario = scenario.with_noise_solved()
    Path(out).mkdir(parents=True, exist_ok=True)
    clients = min(scenario.clients_per_round, scenario.build_pipeline().clients_per_round)
    pop, runs = population(scenario), []
    for attack in ATTACKS:
        for binding in (False, True):
            outcome = run_malicious_round(scenario, MaliciousRound(attack, clients, bins=bins, binding=binding,
                                                                   threshold=threshold, seed=seed), data=pop)
            if outcome.summary["refused"] is None:
                png = f"malicious-{attack}{'-bound' if binding else ''}.png"
                s = outcome.summary
                save_grid(outcome, Path(out) / png, f"{scenario.name}: {attack}, binding {'on' if binding else 'off'}"
                          f"\n{s['recovered']:.0f}/{s['examples']:.0f} at PSNR >= {threshold:g} dB")
                outcome.summary["png"] = png
            runs.append(outcome.summary)
    return {"clients": clients, "bins": bins, "threshold_db": threshold, "runs": runs}
