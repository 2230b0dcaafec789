"""The canary run of ``secfl audit privacy``: one run of the scenario with canary clients, and what it proves.

``canary_audit`` runs the scenario with ``m`` canaries (``secfl.audit.privacy.canaries``), records every
round's release projected on each canary (``secfl.audit.privacy.canary_rounds``) and reports:

1. The one-run lower bound (Steinke, Nasr, Jagielski): the canaries are scored from the releases alone with
   the per-round likelihood-ratio score, and the best of the ``GUESS_FRACTIONS`` tests is taken at a
   Bonferroni-corrected confidence (``best_guess_audit``). Assumption-free; ``failed`` when it exceeds the
   claim. Its ceiling (all guesses right) is set by m: with few canaries it cannot exceed the claim at all.
2. The Gaussian estimate (``secfl.audit.privacy.gaussian_audit``): the per-round signal-to-noise on each
   canary's own group sum (the sum the accountant prices), the epsilon it implies through the scenario's
   own accountant, a flag at ``flag_confidence`` (``flagged``) and the power (the smallest epsilon the
   audit catches with probability 0.95).
   The fresh-noise test (``secfl.audit.privacy.fresh_noise``, ``fresh_noise``): does differencing two
   releases leave the noise the pipeline reports? It flags noise reused across rounds. The two tests split
   the flag's error budget, so a correct mechanism is flagged in at most about 1 - ``flag_confidence`` of
   audits.
3. The epsilon after each round (claimed, estimated with its limits, and the one-run bound on the first t
   rounds) for the report's plot, and the ROC of the final scores.
4. Andrew et al.'s one-shot estimate (cosines with the summed releases), kept for comparison.

``weaken`` runs a negative control: the same scenario with its noise multiplier times ``weaken`` while the
claim stays the correct mechanism's, so the report shows whether the audit catches a broken noise stage.

Threat model: the auditor is the defender (see ``secfl.audit.privacy.canaries``).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from secfl import engine, registry
from secfl.audit.privacy import epsilon as audit_lib
from secfl.audit.privacy import fresh_noise, gaussian_audit
from secfl.audit.privacy.canaries import Canaries
from secfl.audit.privacy.canary_rounds import CanaryRounds, likelihood_scores, noise_scale
from secfl.audit.privacy.epsilon import best_guess_audit
from secfl.exceptions import ConfigurationError
from secfl.runs import RunDir
from secfl.scenario import Scenario

__all__ = ["canary_audit", "fresh_run_dir", "sends_deltas", "CURVE_POINTS"]

#: The per-round epsilon curve is computed at most at this many rounds (the accountant is slow-ish).
CURVE_POINTS = 12


def fresh_run_dir(path: Path) -> RunDir:
    """An empty run directory at ``path`` (an old one is removed)."""
    if path.exists():
        shutil.rmtree(path)
    return RunDir(path)


def sends_deltas(scenario: Scenario) -> bool:
    """Whether the scenario's clients send model deltas (not ``Method.reshapes``)."""
    return not registry.resolve("method", scenario.method).reshapes(scenario, scenario.method_options())


def _clip_norm(scenario: Scenario) -> float | None:
    """The L2 bound of one client's update: the first ``l2clip``'s norm, or ``ddgauss``'s own clip."""
    for stage in scenario.stages:
        if stage.get("kind") == "l2clip":
            return float(stage["norm"])
        if stage.get("kind") == "ddgauss" and "clip" in stage:
            return float(stage["clip"])
    return None


def canary_audit(scenario: Scenario, out: str | Path, options: Any, *, weaken: float | None = None,
                 progress: Any = None) -> dict[str, Any]:
    """Run ``scenario`` with canaries into the run directory ``out``; the module doc says what is returned.

    ``options`` is a ``PrivacyAuditOptions``. Does not raise on a failed or flagged audit (``failed``,
    ``flagged``); ``audit_scenario`` does. ``progress(round, rounds)`` is called after every round.

    Raises:
        ConfigurationError: ``weaken`` without a noise multiplier to weaken, too few clients for the canaries.
    """
    scenario = scenario.with_noise_solved()
    clients = scenario.data.num_clients
    m = min(1000, clients // 2) if options.canaries is None else options.canaries
    if m == 0:
        return {"skipped": "canaries = 0"}
    if any(s.get("kind") == "fedbat_bits" for s in scenario.stages):
        return {"skipped": "the secure FedBAT route releases alpha-scaled bit counts, not an update to project"}
    if not sends_deltas(scenario):
        return {"skipped": f"{scenario.method} clients send something other than a model delta: no model-sized "
                           "canary fits"}
    correct, run_scenario = scenario, scenario
    if weaken is not None:
        z = scenario.stages[scenario.noise_stage()]["noise_multiplier"]
        run_scenario = scenario.with_noise_multiplier(z * weaken)
    clip = _clip_norm(scenario)
    norm = options.canary_norm or clip or 1.0
    canaries = Canaries(num_clients=clients, num_canaries=m, dim=scenario.model_dim(), norm=norm, seed=options.seed)
    rounds = CanaryRounds(canaries)
    on_round = None if progress is None else (lambda row: progress(row["round"], scenario.run.rounds))
    summary = engine.run(run_scenario, fresh_run_dir(Path(out)), observer=rounds, fixed_updates=canaries,
                         on_round=on_round)
    x, delivered = rounds.observations, rounds.delivered
    if x.shape[0] == 0:
        return {"skipped": "no round released anything"}
    delta = float(summary.get("delta", scenario.privacy.delta))
    claim = summary.get("epsilon")
    if weaken is not None:  # the claim is the correct mechanism's; the accountant of the weakened run is the truth
        claim = correct.epsilon_at(correct.stages[correct.noise_stage()]["noise_multiplier"], x.shape[0])
    if not np.all(np.isfinite(x)):
        return {"skipped": "a release was not finite (the run diverged): nothing to project"}
    noise = noise_scale(x)
    signal = min(norm, clip) if clip else norm
    cumulative = (likelihood_scores(x, signal=signal, noise=noise, rate=scenario.sample_rate) if noise > 0
                  else np.cumsum(x, axis=0))
    scores = cumulative[-1]
    result = best_guess_audit(scores, canaries.included, delta=delta, confidence=options.confidence,
                              claimed_epsilon=claim)
    result.update(norm=norm, sampled=int(delivered.any(axis=0).sum()), canary_run_accuracy=summary["final_accuracy"],
                  epsilon_claimed=claim, epsilon_server=summary.get("epsilon_server"), rounds_observed=int(x.shape[0]),
                  score="per-round likelihood ratio" if noise > 0 else "summed projection",
                  epsilon_estimate=_one_shot(x.sum(axis=0), canaries, delta))
    if weaken is not None:
        result.update(weaken=weaken, epsilon_actual=summary.get("epsilon"))
    result["gaussian"] = _gaussian(correct, rounds, canaries.included, signal, claim, options)
    result["curve"] = _curve(correct, cumulative, canaries.included, delta, claim, result["gaussian"], options)
    result["fresh_noise"] = _fresh(rounds, canaries.included, clip, claim, options)
    result["flagged"] = bool(result["gaussian"].get("flagged") or result["fresh_noise"].get("flagged"))
    np.savez_compressed(Path(out) / "canaries.npz", scores=scores, included=canaries.included, slots=canaries.slots,
                        observations=x, delivered=delivered)
    return result


def _gaussian(scenario: Scenario, rounds: CanaryRounds, included: np.ndarray, signal: float,
              claim: float | None, options: Any) -> dict[str, Any]:
    if claim is None or not math.isfinite(claim):
        return {"skipped": "the scenario claims no finite epsilon"}
    try:
        scenario.noise_stage()
        est = gaussian_audit.estimate(rounds.own_group, rounds.delivered, included,
                                      crosstalk=rounds.crosstalk(included, signal))
    except ConfigurationError as exc:
        return {"skipped": str(exc)}
    result = gaussian_audit.assess(est, claimed=claim, rounds=rounds.delivered.shape[0],
                                   epsilon_of=scenario.epsilon_at, noise_of=scenario.noise_at,
                                   confidence=1 - (1 - options.flag_confidence) / 2)  # half the budget
    result["groups_per_round"] = float(np.mean([len(np.unique(g)) for g in rounds.groups]))
    return result


def _fresh(rounds: CanaryRounds, included: np.ndarray, clip: float | None, claim: float | None,
           options: Any) -> dict[str, Any]:
    """The fresh-noise test at the other half of the flag's error budget."""
    if claim is None or not math.isfinite(claim):
        return {"skipped": "the scenario claims no finite epsilon"}
    z = rounds.noise_multipliers
    if clip is None or not np.all(np.isfinite(z)) or not np.all(z > 0):
        return {"skipped": "the rounds' privacy events are not Gaussian with a clip (ddgauss): no reported noise "
                           "scale to compare the differences with"}
    try:
        return fresh_noise.floor_test(rounds.own_group, rounds.delivered, included, z * clip,
                                      alpha=(1 - options.flag_confidence) / 2)
    except ConfigurationError as exc:
        return {"skipped": str(exc)}


def _curve(scenario: Scenario, cumulative: np.ndarray, included: np.ndarray, delta: float, claim: float | None,
           gaussian: dict[str, Any], options: Any) -> list[dict[str, Any]]:
    """The epsilon after round t at up to ``CURVE_POINTS`` rounds: claimed, estimated (with its limits) and the
    one-run bound from the first t rounds' scores (each point a bound on its own: the largest of them is not
    one, as no correction is made across the points)."""
    total = cumulative.shape[0]
    points = sorted({int(t) for t in np.linspace(1, total, min(CURVE_POINTS, total)).round()})
    estimated = claim is not None and "mu" in gaussian
    z = scenario.stages[scenario.noise_stage()]["noise_multiplier"] if estimated else None
    curve = []
    for t in points:
        bound = best_guess_audit(cumulative[t - 1], included, delta=delta, confidence=options.confidence,
                                 claimed_epsilon=None)
        row: dict[str, Any] = {"round": t, "lower_bound": bound["epsilon_lower_bound"]}
        if estimated:
            row["claimed"] = scenario.epsilon_at(z, t)
            for key, mu in (("estimate", gaussian["mu"]), ("estimate_low", gaussian["mu"] - _k(gaussian)),
                            ("estimate_high", gaussian["mu"] + _k(gaussian))):
                row[key] = scenario.epsilon_at(1 / mu, t) if mu > 0 else 0.0
        curve.append(row)
    return curve


def _k(gaussian: dict[str, Any]) -> float:
    """k * se of the Gaussian estimate (the half-width of its one-sided limits)."""
    return float(stats.norm.ppf(gaussian["confidence"])) * gaussian["mu_stderr"]


def _one_shot(summed: np.ndarray, canaries: Canaries, delta: float) -> float | None:
    """Andrew et al.'s estimate: the inserted canaries' projections on everything released against those of the
    canaries left out (the null), as cosines. None when either side has fewer than 2 canaries."""
    inside, outside = canaries.included, ~canaries.included
    if inside.sum() < 2 or outside.sum() < 2:
        return None
    try:
        return audit_lib.one_shot_epsilon(summed[inside], summed[outside], delta)
    except ConfigurationError:  # zero variance: no Gaussian fits (e.g. every score 0)
        return None
