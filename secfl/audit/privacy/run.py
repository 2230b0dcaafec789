"""``secfl audit privacy``: attack what a scenario's server saw and released, and audit its epsilon.

Each scenario is run twice, into ``<out>/<name>/run`` and ``<out>/<name>/canary-run`` (and a third time into
``<out>/<name>/control-run`` with ``negative_control``):

1. As written. Gradient inversion (honest-but-curious server): at round ``inversion_round`` the server
   inverts the first group's decoded mean (under Plaintext with individual grouping: one client's update;
   under a secure sum: only the group's), knowing the round's model and the training recipe (lr, epochs,
   batch size, every client's example count). Inverting Gradients with iDLG labels (or DLG, iDLG:
   ``inversion_method``); the examples behind the group are the truth; PSNR/SSIM beside the black- and
   mean-image baselines. Membership inference on the released (final) model: members are examples of
   clients that took part in a round, non-members held-out test examples; loss threshold, and offline LiRA
   whose shadow models are trained centrally on random halves of a pool holding none of the targets
   (examples of clients that never took part, spare test examples; central training approximates the FL
   training the target had). The AUC and TPR bounds that the claimed (epsilon, delta) implies are printed
   beside. FedAgg (``method = "fedagg"``): its devices send logits on bridge sets, not model deltas, so
   gradient inversion and the canary run are skipped; instead the bridge inversion
   (``secfl.audit.privacy.bridge_inversion``) decodes every latent code a device uploaded and scores it
   against its private example, and membership inference runs on the cloud model (the engine's global model).
2. With canaries (``secfl.audit.privacy.canary_audit``): a second run in which canary clients send fixed
   vectors, every round's release projected on each of them. The one-run audit of Steinke, Nasr, Jagielski
   turns per-round likelihood-ratio scores into an epsilon lower bound at ``confidence`` (assumption-free;
   ``PrivacyAuditError`` if it exceeds the accountant's epsilon). The Gaussian estimate measures each
   round's signal-to-noise, gives the epsilon it implies with limits at ``flag_confidence``, flags the claim
   when the noise is significantly below a correct mechanism's (``PrivacyAuditError`` too), and states the
   audit's power; the fresh-noise test flags releases that share noise across rounds (differences of two
   releases with less noise than the pipeline reports). ``negative_control``: a third run with half the
   noise multiplier under the same claim, to show the audit catching a broken noise stage. The canaries measure the released models, so they are
   checked against the epsilon for those who see only the released models; the epsilon against the
   aggregation server (no amplification by sampling) is reported beside it (``epsilon_server``).

Threat model: the attacks are the adversaries described above; the auditor is the defender and knows
everything (which examples each client holds, which canaries are in). What the attacks measure bounds
nothing from above; the audit's number is a lower bound, never a proof of privacy.

Results are written per scenario as ``result.json`` when that scenario is done; a rerun skips finished
scenarios, and an unfinished one starts over (its two run directories are replaced).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl.audit.privacy import epsilon as audit_lib
from secfl.audit.privacy import fresh_noise
from secfl.audit.privacy.epsilon import GUESS_FRACTIONS, best_guess_audit
from secfl.audit.privacy.bridge_inversion import BridgeRecorder, audit_bridges
from secfl.audit.privacy.canary_audit import canary_audit, fresh_run_dir, sends_deltas
from secfl.audit.privacy.image_metrics import Normalization, evaluate_reconstruction
from secfl.audit.privacy.inversion import ATTACKS, InversionTarget
from secfl.audit.privacy.malicious_model import audit_malicious_model
from secfl.audit.privacy.report import write_privacy_report
from secfl.audit.privacy.membership import (dp_auc_bound, dp_tpr_bound, lira_offline_scores, loss_threshold_scores,
                                      roc_metrics, train_shadow_models)
from secfl.exceptions import ConfigurationError
from secfl import engine as server
from secfl.fl.models import build_model
from secfl.runs import atomic_write
from secfl.scenario import Scenario

#: The negative control's noise multiplier, as a fraction of the scenario's.
NEGATIVE_CONTROL_SCALE = 0.5

__all__ = ["PrivacyAuditOptions", "NEGATIVE_CONTROL_SCALE", "audit_scenario", "canary_audit", "GUESS_FRACTIONS",
           "best_guess_audit", "audit_all"]

@dataclass(frozen=True)
class PrivacyAuditOptions:
    """Knobs of one audit (defaults sized for 2 cores).

    canaries: m (None: min(1000, num_clients // 2); 0: no canary run). canary_norm: None = the first
    ``l2clip`` stage's norm (1.0 without one). inversion_round: the round attacked (0: no inversion).
    max_inversion_examples: groups with more examples are not inverted (reported as skipped).
    mia_examples: members and non-members each. shadows: LiRA shadow models (0: loss threshold only).
    malicious_model: also run the malicious-server attacks through a crafted model (trap weights, model
    inconsistency; ``secfl.audit.privacy.malicious_model``) with imprint layers of ``malicious_bins`` units.
    confidence: of the one-run lower bound. flag_confidence: of the Gaussian estimates' flag (a correct
    mechanism is flagged in about 1 - flag_confidence of audits; the per-round estimate and the fresh-noise
    test each get half of that). negative_control: also audit the scenario
    with its noise multiplier times ``NEGATIVE_CONTROL_SCALE`` (same claim), which the audit should flag.
    """

    canaries: int | None = None
    canary_norm: float | None = None
    inversion_round: int = 1
    inversion_method: str = "inverting_gradients"
    inversion_iterations: int = 1000
    inversion_restarts: int = 1
    max_inversion_examples: int = 256
    mia_examples: int = 500
    shadows: int = 4
    confidence: float = 0.95
    seed: int = 0
    malicious_model: bool = False
    malicious_bins: int = 256
    flag_confidence: float = 0.99
    negative_control: bool = False

    def __post_init__(self) -> None:
        for name, low in (("inversion_round", 0), ("inversion_iterations", 1), ("inversion_restarts", 1),
                          ("max_inversion_examples", 1), ("mia_examples", 2), ("shadows", 0), ("seed", 0),
                          ("malicious_bins", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer >= {low}")
        if self.canaries is not None and (isinstance(self.canaries, bool) or not isinstance(self.canaries, int)
                                          or self.canaries < 0):
            raise ConfigurationError(f"canaries={self.canaries!r} is invalid; pass an integer >= 0")
        if self.inversion_method not in ATTACKS:
            raise ConfigurationError(f"inversion_method={self.inversion_method!r} is unknown; choose one of "
                                     f"{', '.join(ATTACKS)}")
        if self.shadows == 1:
            raise ConfigurationError("shadows=1 cannot estimate a variance; pass 0 or at least 2")
        for name in ("malicious_model", "negative_control"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name}={getattr(self, name)!r} must be True or False")
        for name in ("confidence", "flag_confidence"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigurationError(f"{name}={getattr(self, name)!r} must lie in (0, 1)")


class _Recorder:
    """The observer of the scenario's run: who took part, the attacked round, the released sum."""

    def __init__(self, inversion_round: int) -> None:
        self.inversion_round = inversion_round
        self.participants: set[int] = set()
        self.captured: dict[str, Any] | None = None
        self.released: np.ndarray | None = None
        self.model: torch.nn.Module | None = None
        self.data = self.shards = None

    def __call__(self, seen: server.RoundSeen) -> None:
        self.participants.update(seen.sampled)
        self.model, self.data, self.shards = seen.model, seen.data, seen.shards  # live: final after the run
        out = seen.output
        self.released = out.aggregate.copy() if self.released is None else self.released + out.aggregate
        if seen.round == self.inversion_round and len(out.group_means):
            self.captured = {"model": copy.deepcopy(seen.model), "mean": out.group_means[0].astype(np.float32),
                             "clients": list(out.result.survivors[0])}


def describe_defense(scenario: Scenario) -> str:
    """One line: the stages, the protocol and the grouping."""
    def spec(s: dict[str, Any]) -> str:
        args = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items() if k != "kind")
        return f"{s['kind']}({args})" if args else s["kind"]
    stages = " + ".join(spec(s) for s in scenario.stages) or "none"
    dp_sgd = " + DP-SGD" if scenario.client.dp_sgd is not None else ""
    return f"{stages}{dp_sgd}; {spec(scenario.protocol)}; {spec(scenario.grouping)}"


def audit_scenario(scenario: Scenario, out: str | Path, options: PrivacyAuditOptions = PrivacyAuditOptions(), *,
                   progress: Any = None) -> dict[str, Any]:
    """Run the attacks and the audit on one scenario; write ``<out>/result.json`` (and ``inversion.npz``).

    ``progress(stage, round, rounds)`` is called after every round of each of its runs.

    Raises:
        ConfigurationError: a scenario the audit cannot run (an ``[attack]``, too few clients for canaries).
        PrivacyAuditError: the canaries' lower bound exceeds the accountant's epsilon, or the Gaussian
            estimate or the fresh-noise test flags it (after ``result.json`` is written, with
            ``audit.failed`` / ``audit.flagged``).
    """
    if scenario.attack is not None:
        raise ConfigurationError(f"{scenario.name}: remove [attack]; the privacy audit runs honest clients")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = scenario.with_noise_solved()
    recorder = _Recorder(options.inversion_round)
    bridges = BridgeRecorder() if scenario.method == "fedagg" else None
    on_round = None if progress is None else (lambda row: progress("run", row["round"], scenario.run.rounds))
    summary = server.run(scenario, fresh_run_dir(out / "run"), observer=recorder, hooks=[bridges] if bridges else [],
                         on_round=on_round)
    if recorder.data is None:
        raise ConfigurationError(f"{scenario.name}: no round released anything (every round too small)")
    claimed = summary.get("epsilon")
    delta = float(summary.get("delta", scenario.privacy.delta))
    result: dict[str, Any] = {
        "name": scenario.name, "defense": describe_defense(scenario), "rounds": summary["rounds"],
        "accuracy": summary["final_accuracy"], "epsilon_claimed": claimed,
        "epsilon_server": summary.get("epsilon_server"), "epsilon_server_rounds": summary.get("epsilon_server_rounds"),
        "delta": delta, "accountant": scenario.privacy.accountant,
        "sample_level_epsilon": scenario.client.dp_sgd is not None, "options": asdict(options),
    }
    result["inversion"] = _inversion(scenario, recorder, options, out)
    result["membership"] = _membership(scenario, recorder, options, claimed, delta)
    if options.malicious_model:
        result["malicious_model"] = audit_malicious_model(scenario, out, bins=options.malicious_bins, seed=options.seed)
    if bridges is not None:
        result["bridges"] = audit_bridges(bridges, recorder.model, out, mia_examples=options.mia_examples,
                                          seed=options.seed)
    result["audit"] = canary_audit(scenario, out / "canary-run", options, progress=_stage(progress, "canary run"))
    if options.negative_control:
        result["negative_control"] = _negative_control(scenario, out / "control-run", options,
                                                       _stage(progress, "negative control"))
    atomic_write(out / "result.json", json.dumps(result, indent=2, default=_json).encode())
    audit = result["audit"]
    if audit.get("failed"):
        audit_lib.check_claim(audit["epsilon_claimed"], audit["epsilon_lower_bound"])
    if audit.get("gaussian", {}).get("flagged"):
        g = audit["gaussian"]
        raise audit_lib.PrivacyAuditError(
            f"the canaries measure epsilon {g['epsilon']:.4g} (at least {g['epsilon_low']:.4g} at "
            f"{100 * g['confidence']:g}% confidence), more than the claimed {audit['epsilon_claimed']:.4g}: the noise "
            "on the releases is smaller than the accountant assumes")
    if audit.get("flagged"):
        raise audit_lib.PrivacyAuditError(f"releases share noise across rounds, or carry less than reported: "
                                          f"{fresh_noise.finding(audit['fresh_noise'])}")
    return result


def _stage(progress: Any, stage: str) -> Any:
    return None if progress is None else (lambda done, total: progress(stage, done, total))


def _negative_control(scenario: Scenario, out: Path, options: PrivacyAuditOptions, progress: Any) -> dict[str, Any]:
    try:
        scenario.noise_stage()
    except ConfigurationError as exc:
        return {"skipped": f"no noise multiplier to weaken ({exc})"}
    return canary_audit(scenario, out, options, weaken=NEGATIVE_CONTROL_SCALE, progress=progress)


def _json(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _inversion(scenario: Scenario, rec: _Recorder, options: PrivacyAuditOptions, out: Path) -> dict[str, Any]:
    if options.inversion_round == 0:
        return {"skipped": "inversion_round = 0"}
    if scenario.method == "fedbat":
        return {"skipped": "FedBAT uploads binarized weights, not a gradient-like delta"}
    if scenario.method == "fedagg":
        return {"skipped": "FedAgg devices send logits on bridge sets, not a model delta (see the bridge inversion)"}
    if not sends_deltas(scenario):
        return {"skipped": f"{scenario.method} clients send something other than a model delta"}
    if rec.captured is None:
        return {"skipped": f"round {options.inversion_round} was not run or released nothing"}
    if len(rec.data.input_shape) != 3:
        return {"skipped": f"the inputs are not images (shape {tuple(rec.data.input_shape)})"}
    clients = rec.captured["clients"]
    index = np.concatenate([rec.shards[c] for c in clients])
    if len(index) > options.max_inversion_examples:
        return {"skipped": f"the group holds {len(index)} examples (> max_inversion_examples = "
                           f"{options.max_inversion_examples})", "examples": int(len(index))}
    data, client = rec.data, scenario.client
    steps = 1 if client.mode == "gradient" else float(np.mean(
        [client.epochs * math.ceil(len(rec.shards[c]) / client.batch_size) for c in clients]))
    norm = Normalization.infer(data.x_train)
    target = InversionTarget(rec.captured["model"], rec.captured["mean"], tuple(data.input_shape),
                             data.num_classes, count=int(len(index)), kind="delta", lr=client.lr,
                             local_steps=max(1, round(steps)), normalization=norm)
    extra = {"restarts": options.inversion_restarts} if options.inversion_method == "inverting_gradients" else {}
    with _one_thread():
        attack = ATTACKS[options.inversion_method](target, iterations=options.inversion_iterations,
                                                   seed=options.seed, **extra)
    truth_x, truth_y = data.x_train[index], data.y_train[index]
    mean_image = np.clip(norm.to_pixels(data.x_test.mean(axis=0)), 0.0, 1.0)  # public data's mean image
    metrics = evaluate_reconstruction(attack, truth_x, truth_y, normalization=norm, mean_image=mean_image)
    np.savez_compressed(out / "inversion.npz", truth=np.clip(norm.to_pixels(truth_x), 0, 1),
                        reconstruction=attack.pixels, labels=attack.labels, true_labels=truth_y)
    central = any(st.get("kind") == "gaussian_noise" and st.get("placement") == "central" for st in scenario.stages)
    note = {"note": "central noise: the server saw the sum before adding it; this inverts the released mean"}
    return {**(note if central else {}), "method": attack.method, "clients": len(clients), "examples": int(len(index)), "local_steps": steps,
            "seconds": attack.seconds, **{k: float(v) for k, v in metrics.items()}}


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny double-backward graphs run far faster on one thread when the cores are busy (inversion doc)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _membership(scenario: Scenario, rec: _Recorder, options: PrivacyAuditOptions, claimed: float | None,
                delta: float) -> dict[str, Any]:
    data, rng = rec.data, np.random.default_rng([options.seed, 13])
    took_part = sorted(rec.participants)
    members = np.concatenate([rec.shards[c] for c in took_part]) if took_part else np.array([], dtype=np.int64)
    n = min(options.mia_examples, len(members), len(data.y_test))
    if n < 2:
        return {"skipped": f"only {n} member/non-member examples"}
    member_idx = rng.choice(members, size=n, replace=False)
    test_idx = rng.choice(len(data.y_test), size=n, replace=False)
    x = np.concatenate([data.x_train[member_idx], data.x_test[test_idx]])
    y = np.concatenate([data.y_train[member_idx], data.y_test[test_idx]])
    is_member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    model = rec.model.eval()
    result: dict[str, Any] = {"examples": int(2 * n),
                              "loss_threshold": roc_metrics(loss_threshold_scores(model, x, y), is_member)}
    never = sorted(set(range(len(rec.shards))) - set(took_part))
    pool = np.concatenate([rec.shards[c] for c in never]) if never else np.array([], dtype=np.int64)
    spare = np.setdiff1d(np.arange(len(data.y_test)), test_idx)  # test examples not used as non-members
    pool_x = np.concatenate([data.x_train[pool], data.x_test[spare]])
    pool_y = np.concatenate([data.y_train[pool], data.y_test[spare]])
    if options.shadows and len(pool_y) >= 4:
        result["lira"] = _lira(scenario, model, data, pool_x, pool_y, x, y, is_member, options)
        result["lira_pool"] = int(len(pool_y))
    elif options.shadows:
        result["lira_skipped"] = f"only {len(pool_y)} examples outside the targets for the shadow models"
    if claimed is not None and math.isfinite(claimed):  # the client-level claim bounds each example too
        result["bounds"] = {"auc": dp_auc_bound(claimed, delta), "tpr_at_1%": dp_tpr_bound(claimed, delta, 0.01),
                            "tpr_at_0.1%": dp_tpr_bound(claimed, delta, 0.001)}
    return result


def _lira(scenario: Scenario, model: torch.nn.Module, data: Any, pool_x: np.ndarray, pool_y: np.ndarray,
          x: np.ndarray, y: np.ndarray, is_member: np.ndarray, options: PrivacyAuditOptions) -> dict[str, float]:
    """Offline LiRA: shadows trained on random halves of a pool that holds none of the targets (all OUT)."""
    client, spec = scenario.client, scenario.model
    passes = scenario.run.rounds * client.epochs * scenario.sample_rate  # expected passes over one example

    def build(seed: int) -> torch.nn.Module:
        return build_model(spec.kind, input_shape=tuple(data.input_shape), num_classes=data.num_classes,
                           seed=seed, **spec.options)

    with _one_thread():
        shadows, _ = train_shadow_models(build, pool_x, pool_y, options.shadows, max(2, len(pool_y) // 2),
                                         epochs=max(1, round(passes)), lr=client.lr, seed=options.seed,
                                         batch_size=client.batch_size)
        scores = lira_offline_scores(model, shadows, x, y)
    return roc_metrics(scores, is_member)


def audit_all(scenarios: list[Scenario], out: str | Path, options: PrivacyAuditOptions = PrivacyAuditOptions(),
              *, on_done: Any = None, progress: Any = None) -> tuple[list[dict[str, Any]], Path]:
    """Audit every scenario into ``<out>/<name>/`` and write ``<out>/audit.md`` after each one.

    ``progress(name, stage, round, rounds)`` is called after every round of every run.

    A scenario whose ``result.json`` holds the same options is not run again (a killed audit resumes).
    Returns the results and the report's path; a failed audit is in the results (``audit.failed``), so the
    caller decides how loudly to fail.

    Raises:
        ConfigurationError: two scenarios with one name, or a scenario the audit cannot run.
    """
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"scenario names must differ (each gets <out>/<name>/): {names}")
    if not scenarios:
        raise ConfigurationError("pass at least one scenario")
    out = Path(out)
    results: list[dict[str, Any]] = []
    for scenario in scenarios:
        stored = out / scenario.name / "result.json"
        result = json.loads(stored.read_text()) if stored.exists() else None
        if result is None or result.get("options") != json.loads(json.dumps(asdict(options))):
            try:
                each = None if progress is None else (
                    lambda stage, done, total, name=scenario.name: progress(name, stage, done, total))
                result = audit_scenario(scenario, out / scenario.name, options, progress=each)
            except audit_lib.PrivacyAuditError:
                result = json.loads(stored.read_text())
        results.append(result)
        report = write_privacy_report(results, out)
        if on_done is not None:
            on_done(result)
    return results, report
