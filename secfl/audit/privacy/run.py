"""``secfl audit privacy``: attack what a scenario's server saw and released, and audit its epsilon.

Each scenario is run twice, into ``<out>/<name>/run`` and ``<out>/<name>/canary-run``:

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
2. With canaries (``secfl.audit.privacy.canaries``): the one-run audit of Steinke, Nasr, Jagielski turns the
   canaries' scores into an epsilon lower bound at ``confidence``. Guesses: the top ``k`` as "in" and
   (or not) the bottom ``k`` as "out", for ``k`` in ``GUESS_FRACTIONS`` of m; the best of these 2 x 5
   tests is reported with a Bonferroni-corrected confidence, so the bound stays valid. If the lower bound
   exceeds the accountant's epsilon the audit raises ``PrivacyAuditError`` (noise or accounting is wrong).
   The canaries measure the released models, so the bound is checked against the epsilon for those who
   see only the released models; the epsilon against the aggregation server (which knows who took part:
   no amplification by sampling) is reported beside it (``epsilon_server``).
   Beside it, Andrew et al.'s one-shot epsilon *estimate* (ICLR'24; not a bound, never a failure): the
   cosines of the inserted canaries with everything released against those of the canaries left out.

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
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl.audit.privacy import epsilon as audit_lib
from secfl.audit.privacy.epsilon import GUESS_FRACTIONS, best_guess_audit
from secfl.audit.privacy.bridge_inversion import BridgeRecorder, audit_bridges
from secfl.audit.privacy.canaries import Canaries
from secfl.audit.privacy.image_metrics import Normalization, evaluate_reconstruction
from secfl.audit.privacy.inversion import ATTACKS, InversionTarget
from secfl.audit.privacy.malicious_model import audit_malicious_model
from secfl.audit.privacy.report import write_privacy_report
from secfl.audit.privacy.membership import (dp_auc_bound, dp_tpr_bound, lira_offline_scores, loss_threshold_scores,
                                      roc_metrics, train_shadow_models)
from secfl.exceptions import ConfigurationError
from secfl import engine as server
from secfl import registry
from secfl.fl.models import build_model
from secfl.runs import RunDir, atomic_write
from secfl.scenario import Scenario

__all__ = ["PrivacyAuditOptions", "audit_scenario", "canary_audit", "GUESS_FRACTIONS", "best_guess_audit", "audit_all"]

@dataclass(frozen=True)
class PrivacyAuditOptions:
    """Knobs of one audit (defaults sized for 2 cores).

    canaries: m (None: min(1000, num_clients // 2); 0: no canary run). canary_norm: None = the first
    ``l2clip`` stage's norm (1.0 without one). inversion_round: the round attacked (0: no inversion).
    max_inversion_examples: groups with more examples are not inverted (reported as skipped).
    mia_examples: members and non-members each. shadows: LiRA shadow models (0: loss threshold only).
    malicious_model: also run the malicious-server attacks through a crafted model (trap weights, model
    inconsistency; ``secfl.audit.privacy.malicious_model``) with imprint layers of ``malicious_bins`` units.
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
        if not isinstance(self.malicious_model, bool):
            raise ConfigurationError(f"malicious_model={self.malicious_model!r} must be True or False")
        if not 0 < self.confidence < 1:
            raise ConfigurationError(f"confidence={self.confidence!r} must lie in (0, 1)")


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


def _fresh(path: Path) -> RunDir:
    if path.exists():
        shutil.rmtree(path)
    return RunDir(path)


def _clip_norm(scenario: Scenario) -> float | None:
    for stage in scenario.stages:
        if stage.get("kind") == "l2clip":
            return float(stage["norm"])
    return None


def _reshapes(scenario: Scenario) -> bool:
    """Whether the scenario's clients send something other than model deltas (``Method.reshapes``)."""
    return bool(registry.resolve("method", scenario.method).reshapes(scenario, scenario.method_options()))


def describe_defense(scenario: Scenario) -> str:
    """One line: the stages, the protocol and the grouping."""
    def spec(s: dict[str, Any]) -> str:
        args = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items() if k != "kind")
        return f"{s['kind']}({args})" if args else s["kind"]
    stages = " + ".join(spec(s) for s in scenario.stages) or "none"
    dp_sgd = " + DP-SGD" if scenario.client.dp_sgd is not None else ""
    return f"{stages}{dp_sgd}; {spec(scenario.protocol)}; {spec(scenario.grouping)}"


def audit_scenario(scenario: Scenario, out: str | Path, options: PrivacyAuditOptions = PrivacyAuditOptions()) -> dict[str, Any]:
    """Run the attacks and the audit on one scenario; write ``<out>/result.json`` (and ``inversion.npz``).

    Raises:
        ConfigurationError: a scenario the audit cannot run (an ``[attack]``, too few clients for canaries).
        PrivacyAuditError: the canaries' lower bound exceeds the accountant's epsilon (after ``result.json``
            is written, with ``audit.failed`` = true).
    """
    if scenario.attack is not None:
        raise ConfigurationError(f"{scenario.name}: remove [attack]; the privacy audit runs honest clients")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scenario = scenario.with_noise_solved()
    recorder = _Recorder(options.inversion_round)
    bridges = BridgeRecorder() if scenario.method == "fedagg" else None
    summary = server.run(scenario, _fresh(out / "run"), observer=recorder, hooks=[bridges] if bridges else [])
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
    result["audit"] = canary_audit(scenario, out / "canary-run", options)
    atomic_write(out / "result.json", json.dumps(result, indent=2, default=_json).encode())
    if result["audit"].get("failed"):
        audit_lib.check_claim(result["audit"]["epsilon_claimed"], result["audit"]["epsilon_lower_bound"])
    return result


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
    if _reshapes(scenario):
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


def canary_audit(scenario: Scenario, out: str | Path, options: PrivacyAuditOptions = PrivacyAuditOptions()
                 ) -> dict[str, Any]:
    """Run ``scenario`` with canaries into the run directory ``out`` and bound its epsilon from below.

    Returns ``best_guess_audit``'s dict plus the canary norm, how many canaries were sampled, the run's
    accuracy, the accountant's ``epsilon_claimed`` (released models; None without a DP stage) and
    ``epsilon_server`` (against the aggregation server, not audited: the canaries see only the releases). Does not raise on a
    failed audit (``failed`` is True); ``audit_scenario`` does.
    """
    scenario = scenario.with_noise_solved()
    clients = scenario.data.num_clients
    m = min(1000, clients // 2) if options.canaries is None else options.canaries
    if m == 0:
        return {"skipped": "canaries = 0"}
    if any(s.get("kind") == "fedbat_bits" for s in scenario.stages):
        return {"skipped": "the secure FedBAT route releases alpha-scaled bit counts, not an update to project"}
    if _reshapes(scenario):
        return {"skipped": f"{scenario.method} clients send something other than a model delta: no model-sized "
                           "canary fits"}
    norm = options.canary_norm or _clip_norm(scenario) or 1.0
    canaries = Canaries(num_clients=clients, num_canaries=m, dim=scenario.model_dim(), norm=norm, seed=options.seed)
    recorder = _Recorder(0)
    summary = server.run(scenario, _fresh(Path(out)), observer=recorder, fixed_updates=canaries)
    if recorder.released is None:
        return {"skipped": "no round released anything"}
    took_part = recorder.participants & set(int(c) for c in canaries.slots)
    claim = summary.get("epsilon")
    delta = float(summary.get("delta", scenario.privacy.delta))
    scores = canaries.scores(recorder.released)
    result = best_guess_audit(scores, canaries.included, delta=delta, confidence=options.confidence,
                              claimed_epsilon=claim)
    result.update(norm=norm, sampled=len(took_part), canary_run_accuracy=summary["final_accuracy"],
                  epsilon_claimed=claim, epsilon_server=summary.get("epsilon_server"), epsilon_estimate=_one_shot(scores, recorder.released, canaries, delta))
    np.savez_compressed(Path(out) / "canaries.npz", scores=scores, included=canaries.included, slots=canaries.slots)
    return result


def _one_shot(scores: np.ndarray, released: np.ndarray, canaries: Canaries, delta: float) -> float | None:
    """Andrew et al.'s estimate: cosines of the inserted canaries with everything released, against the
    cosines of the canaries left out (the null). None when either side has fewer than 2 canaries."""
    norm = float(np.linalg.norm(released))
    inside, outside = canaries.included, ~canaries.included
    if norm == 0 or inside.sum() < 2 or outside.sum() < 2:
        return None
    cosines = scores / norm
    try:
        return audit_lib.one_shot_epsilon(cosines[inside], cosines[outside], delta)
    except ConfigurationError:  # zero variance: no Gaussian fits (e.g. every score 0)
        return None


def audit_all(scenarios: list[Scenario], out: str | Path, options: PrivacyAuditOptions = PrivacyAuditOptions(),
              *, on_done: Any = None) -> tuple[list[dict[str, Any]], Path]:
    """Audit every scenario into ``<out>/<name>/`` and write ``<out>/audit.md`` after each one.

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
                result = audit_scenario(scenario, out / scenario.name, options)
            except audit_lib.PrivacyAuditError:
                result = json.loads(stored.read_text())
        results.append(result)
        report = write_privacy_report(results, out)
        if on_done is not None:
            on_done(result)
    return results, report
