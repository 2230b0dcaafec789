"""Does the epsilon audit catch a broken noise stage on an unchanged scenario, and leave a correct one alone?

Runs the canary audit of ``secfl audit privacy`` (``secfl.audit.privacy.canary_audit``) ``--runs`` times on the
scenario as written (default ``secfl/scenarios/dp-distributed.toml``), ``--runs`` times on its negative
control (the noise multiplier times 0.5, the claim unchanged) and ``--runs`` times with stale noise (the noise
stage's generator seeded the same way at every draw, so every client adds the same noise in every round: each
round is noisier than claimed, but two consecutive releases nearly cancel it). Every run has its own canary
seed, and the noise comes from the OS CSPRNG, so the runs are independent. For each it records whether the
audit flagged the claim (the per-round Gaussian estimate's limit above it, or the fresh-noise test: two
releases keeping less noise than the pipeline reports), whether the one-run bound exceeded it (``failed``),
the estimate, what differencing keeps, the bound and the power. It prints the counts and writes
``epsilon_audit_power.json`` after every run (a killed benchmark resumes where it stopped).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/epsilon_audit_power.py [--runs 20] [--jobs 2] \\
        [--scenario secfl/scenarios/dp-distributed.toml] [--out benchmarks/results] [--only correct,stale]

About 1 minute per run on one core (dp-distributed: 50 rounds of 50 clients, SecAgg+).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from secfl.audit.privacy.canary_audit import canary_audit
from secfl.audit.privacy.run import NEGATIVE_CONTROL_SCALE, PrivacyAuditOptions
from secfl.runs import atomic_write
from secfl.scenario import load
from secfl.stages.noise import GaussianNoise

KEEP = ("epsilon_claimed", "epsilon_actual", "epsilon_lower_bound", "audit_ceiling", "failed", "flagged", "sampled")
KEEP_GAUSSIAN = ("mu", "mu_stderr", "epsilon", "epsilon_low", "epsilon_high", "detectable_epsilon",
                 "noise_multiplier", "noise_multiplier_claimed", "flagged")
KEEP_FRESH = ("worst_fraction", "worst_p", "worst_rounds", "pooled_fraction", "pooled_p", "flagged")
KINDS = ("correct", "control", "stale")


def _same_every_round(self: GaussianNoise, size: int, std: float, rng: np.random.Generator) -> np.ndarray:
    """The stale-noise bug: a generator seeded the same way at every draw."""
    return std * np.random.default_rng(0).standard_normal(size)


def one(job: tuple[str, str, int]) -> dict[str, Any]:
    path, kind, seed = job
    weaken = NEGATIVE_CONTROL_SCALE if kind == "control" else None
    if kind == "stale":  # each job runs in its own spawned process: the patch stays in it
        GaussianNoise._noise = _same_every_round  # type: ignore[method-assign]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = canary_audit(load(path), Path(tmp) / "run", PrivacyAuditOptions(seed=seed), weaken=weaken)
    row = {"kind": kind, "seed": seed, "seconds": time.perf_counter() - start}
    row.update({k: result.get(k) for k in KEEP})
    row.update({f"gaussian_{k}": result["gaussian"].get(k) for k in KEEP_GAUSSIAN})
    row.update({f"fresh_{k}": result["fresh_noise"].get(k) for k in KEEP_FRESH})
    return row


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The table, and how calibrated the per-round flag is: (mu_hat - mu_claim) / se over the correct runs."""
    lines = ["| mechanism | runs | flagged | by the per-round estimate | by the fresh-noise test | "
             "one-run bound > claim | epsilon estimate (min-max) | differences keep, pooled (min-max) | "
             "one-run bound (max) | catches epsilon >= (median) |", "|" + "---|" * 10]
    labels = {"correct": "as written", "control": f"noise x {NEGATIVE_CONTROL_SCALE:g}",
              "stale": "same noise every round"}
    for kind, label in labels.items():
        part = [r for r in rows if r["kind"] == kind]
        if not part:
            continue
        est = sorted(r["gaussian_epsilon"] for r in part)
        kept = sorted(r["fresh_pooled_fraction"] for r in part)
        power = sorted(r["gaussian_detectable_epsilon"] for r in part)
        lines.append(f"| {label} | {len(part)} | {sum(r['flagged'] for r in part)} | "
                     f"{sum(bool(r['gaussian_flagged']) for r in part)} | "
                     f"{sum(bool(r['fresh_flagged']) for r in part)} | "
                     f"{sum(r['failed'] for r in part)} | {est[0]:.3g}-{est[-1]:.3g} | {kept[0]:.3g}-{kept[-1]:.3g} | "
                     f"{max(r['epsilon_lower_bound'] for r in part):.2f} | {power[len(power) // 2]:.2f} |")
    z = [(r["gaussian_mu"] - 1 / r["gaussian_noise_multiplier_claimed"]) / r["gaussian_mu_stderr"]
         for r in rows if r["kind"] == "correct"]
    if len(z) > 1:
        lines.append(f"\ncorrect runs: (mu_hat - mu_claim) / se has mean {statistics.mean(z):.2f} and standard "
                     f"deviation {statistics.stdev(z):.2f} over {len(z)} runs (0 and 1 when calibrated); "
                     f"{sum(v > 2.576 for v in z)} beyond the flag's 2.58")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--scenario", default="secfl/scenarios/dp-distributed.toml")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", help=f"run only these mechanisms, comma-separated (of {', '.join(KINDS)})")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "epsilon_audit_power.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    rows = stored.get("rows", []) if stored.get("scenario") == args.scenario else []
    done = {(r["kind"], r["seed"]) for r in rows}
    kinds = tuple(args.only.split(",")) if args.only else KINDS
    if not set(kinds) <= set(KINDS):
        parser.error(f"--only {args.only!r}: choose among {', '.join(KINDS)}")
    jobs = [(args.scenario, kind, seed) for seed in range(args.runs) for kind in kinds if (kind, seed) not in done]
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.jobs, maxtasksperchild=1) as pool:  # "stale" patches
        for i, row in enumerate(pool.imap_unordered(one, jobs), 1):
            rows.append(row)
            rows.sort(key=lambda r: (r["kind"], r["seed"]))
            atomic_write(path, json.dumps({"scenario": args.scenario, "rows": rows}, indent=1).encode())
            left = (time.perf_counter() - start) / i * (len(jobs) - i)
            print(f"[{i}/{len(jobs)}] {row['kind']} seed {row['seed']}: flagged {row['flagged']}, estimate "
                  f"{row['gaussian_epsilon']:.2f}, differences keep {row['fresh_pooled_fraction']:.3g}, bound "
                  f"{row['epsilon_lower_bound']:.2f} "
                  f"({row['seconds']:.0f} s; about {left / 60:.0f} min left)", flush=True)
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
