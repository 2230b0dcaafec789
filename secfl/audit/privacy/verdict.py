"""The first section of ``audit.md``: provenance and, per scenario, a verdict in words a reviewer can sign.

The verdict states what was claimed (epsilon, delta, accountant), what the canaries measured (the Gaussian
estimate with its limits, whether the noise is fresh each round, and the assumption-free one-run lower
bound) and how strong that evidence is (the power: the smallest epsilon the audit catches; the ceiling: the
largest bound these canaries could ever prove), whether the negative control was caught, what the attacks
got, and for every attack that did not run, why and what would make it run.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from typing import Any

from secfl.audit.privacy import fresh_noise
from secfl.audit.privacy.image_metrics import RECOGNISABLE_PSNR

__all__ = ["provenance_lines", "verdict_lines"]

#: Skip reasons (by their start) -> what would make the attack run.
_REMEDY = {
    "inversion_round = 0": "pass --round N (N >= 1)",
    "the group holds": "raise PrivacyAuditOptions.max_inversion_examples (inversion is slow: minutes per 100 "
                       "examples) or attack a scenario with smaller groups",
    "round ": "attack a round the run reaches (--round) in which a group released a sum",
    "the inputs are not images": "none: inversion is scored on images",
    "canaries = 0": "pass --canaries M (M >= 2; default min(1000, num_clients // 2))",
    "the scenario claims no finite epsilon": "none: there is no claim to estimate against",
    "no noise multiplier": "give the noise stage a noise_multiplier (or privacy.target_epsilon), not std",
    "only ": "use more clients or a larger test split (too few examples to measure)",
}


def provenance_lines(results: Sequence[dict[str, Any]], environment: dict[str, Any]) -> list[str]:
    """Who ran what, when: secfl's version and git sha, the date, each scenario's accountant and delta."""
    packages = environment.get("packages", {})
    sha = environment.get("git_sha") or "not a git checkout"
    lines = ["## Provenance", "",
             f"- secfl {packages.get('secfl') or '?'} (git {sha}), Python {environment.get('python', '?')}, "
             f"torch {packages.get('torch') or '?'}, dp-accounting {packages.get('dp-accounting') or '?'}",
             f"- written {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"]
    for r in results:
        lines.append(f"- {r['name']}: {r.get('rounds', '?')} rounds, accountant {r.get('accountant', '?')}, delta "
                     f"{r.get('delta', '?')}, audit seed {r.get('options', {}).get('seed', '?')}; the run directories "
                     f"are `{r['name']}/run` and `{r['name']}/canary-run`"
                     + (f" and `{r['name']}/control-run`" if r.get("negative_control") else ""))
    return [*lines, ""]


def verdict_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """One paragraph per scenario: the epsilon verdict first, then the attacks, then what was skipped."""
    lines = ["## Verdict", ""]
    for r in results:
        lines += [f"**{r['name']}.** {_epsilon(r)} {_inversion(r.get('inversion', {}))} "
                  f"{_membership(r.get('membership', {}))}".rstrip(), ""]
        skipped = _skipped(r)
        if skipped:
            lines += [f"Not run for {r['name']}:", "", *skipped, ""]
    return lines


def _epsilon(r: dict[str, Any]) -> str:
    claimed, audit = r.get("epsilon_claimed"), r.get("audit", {})
    if claimed is None:
        return "The scenario claims no differential privacy, so there is no epsilon to audit."
    claim = f"The accountant claims epsilon = {claimed:.3g} at delta = {r.get('delta', '?')} (released models)."
    if "skipped" in audit:
        return f"{claim} The canary audit did not run."
    lower, ceiling = audit["epsilon_lower_bound"], audit["audit_ceiling"]
    confidence = 100 * r.get("options", {}).get("confidence", 0.95)
    proven = (f"The assumption-free one-run lower bound is {lower:.3g} ({audit['correct']} of {audit['guesses']} "
              f"guesses right); these canaries could never prove more than {ceiling:.3g}"
              + (", below the claim, so on its own it cannot catch any under-reporting." if ceiling < claimed
                 else "."))
    if audit.get("failed"):
        return (f"{claim} **FAILED: the canaries prove epsilon >= {lower:.3g} at {confidence:.0f}% confidence, more "
                "than claimed: the noise or the accounting is wrong.**")
    g = audit.get("gaussian", {})
    if "epsilon" not in g:
        fresh = audit.get("fresh_noise", {})
        parts = (claim, "" if fresh.get("flagged") else "Not contradicted.", _fresh(fresh), proven,
                 f"(No Gaussian estimate: {g.get('skipped', 'n/a')}.)")
        return " ".join(part for part in parts if part)
    level = f"{100 * g['confidence']:g}%"
    measured = (f"the canaries measure epsilon {g['epsilon']:.3g}, between {g['epsilon_low']:.3g} and "
                f"{g['epsilon_high']:.3g} at {level} confidence (noise multiplier {g['noise_multiplier']:.3g} against "
                f"{g['noise_multiplier_claimed']:.3g} claimed; {g['signal_observations']} rounds with a canary in the "
                "sum)")
    family = r.get("options", {}).get("flag_confidence", 2 * g["confidence"] - 1)
    power = (f"This audit catches, with 95% probability, a mechanism whose epsilon is {g['detectable_epsilon']:.3g} or "
             f"more (a noise multiplier of {g['detectable_noise_multiplier']:.3g} or less) when its noise is Gaussian "
             "and fresh each round; it does not see a wrong sampling rate. A correct mechanism is flagged in about "
             f"{100 - 100 * family:.2g}% of audits.")
    fresh = audit.get("fresh_noise", {})
    if g.get("flagged"):
        verdict = (f"**FLAGGED: {measured}, above the claim: the noise on the releases is smaller than the "
                   "accountant assumes.** The estimate assumes Gaussian noise on the releases.")
    else:
        verdict = f"{'One round at a time' if fresh.get('flagged') else 'Not contradicted'}: {measured}."
    parts = (claim, verdict, _fresh(fresh), power, proven)
    return " ".join(part for part in parts if part) + _control(r)


def _fresh(f: dict[str, Any]) -> str:
    """The fresh-noise test: do two releases keep the noise the pipeline reports for them?"""
    if "worst_fraction" not in f:
        return ""
    if f.get("flagged"):
        return (f"**FLAGGED: releases share noise across rounds (or carry less than reported): "
                f"{fresh_noise.finding(f)}. Anyone holding those models subtracts the shared noise.**")
    return f"Fresh noise each round is not contradicted: {fresh_noise.finding(f)}."


def _control(r: dict[str, Any]) -> str:
    control = r.get("negative_control")
    if not control or "skipped" in control:
        return ""
    g = control.get("gaussian", {})
    what = (f" Negative control: the same run with half the noise multiplier (true epsilon "
            f"{control.get('epsilon_actual', math.nan):.3g}, still claimed {control['epsilon_claimed']:.3g})")
    if control.get("flagged") or control.get("failed"):
        return f"{what} was caught (estimated {g.get('epsilon', math.nan):.3g}): the audit sees such a bug."
    return f"{what} was **not** caught: this audit cannot tell such a bug from a correct mechanism here."


def _inversion(inv: dict[str, Any]) -> str:
    if not inv or "skipped" in inv:
        return ""
    psnr, mean = inv["psnr"], inv["psnr_mean"]
    seen = ("recognisable" if psnr >= RECOGNISABLE_PSNR else "not recognisable") if math.isfinite(psnr) else "n/a"
    return (f"A server inverting what it saw ({inv['examples']} examples of {inv['clients']} client(s)) reached "
            f"{psnr:.1f} dB against {mean:.1f} dB for the mean image: {seen} (threshold {RECOGNISABLE_PSNR:g} dB).")


def _membership(mia: dict[str, Any]) -> str:
    if not mia or "skipped" in mia:
        return ""
    auc = mia["loss_threshold"]["auc"]
    bound = mia.get("bounds")
    allowed = f" (the claim allows up to {bound['auc']:.3f})" if bound else ""
    return f"Membership inference on the released model: AUC {auc:.3f}{allowed}."


def _skipped(r: dict[str, Any]) -> list[str]:
    out = []
    parts = (("gradient inversion", r.get("inversion", {})), ("membership inference", r.get("membership", {})),
             ("epsilon audit", r.get("audit", {})), ("Gaussian estimate", r.get("audit", {}).get("gaussian", {})),
             ("fresh-noise test", r.get("audit", {}).get("fresh_noise", {})),
             ("negative control", r.get("negative_control") or {}))
    for what, part in parts:
        if isinstance(part, dict) and "skipped" in part:
            reason = str(part["skipped"])
            remedy = next((fix for start, fix in _REMEDY.items() if reason.startswith(start)), "see the reason")
            out.append(f"- {what}: {reason}. To run it: {remedy}.")
    return out
