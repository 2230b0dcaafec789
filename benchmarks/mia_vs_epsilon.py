"""Membership inference against the released model as client-level epsilon falls, beside the bound DP implies.

The privacy-audit scenarios on single-example clients (attacks/scenarios/privacy_plain_single.toml and
privacy_dp_eps{1000,64,8,1}_single.toml: MNIST, 4,000 clients of one digit each, 20 per round, 30 rounds,
MLP(64); the DP ones clip to 1 and split the noise across the round inside SecAgg+), each run with several
seeds (``run.seed``: the model's initialisation, who is sampled, the data order; the DP noise comes from the
OS CSPRNG and differs in every run anyway). Attacks: loss threshold and offline LiRA with 4 shadow models
(``secfl.audit.privacy.run``), 500 members (digits of clients that took part) against 500 test digits.
One client holds one example, so the client-level epsilon bounds each digit's membership.

    .venv/bin/python benchmarks/mia_vs_epsilon.py [--seeds 0 1 2] [--out benchmarks/results]

Writes mia_vs_epsilon.json (after every run). About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from secfl import scenario
from secfl.audit.privacy.run import PrivacyAuditOptions, audit_scenario

SCENARIOS = ("privacy_plain_single", "privacy_dp_eps1000_single", "privacy_dp_eps64_single", "privacy_dp_eps8_single",
             "privacy_dp_eps1_single")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = args.out / "mia_vs_epsilon.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    options = PrivacyAuditOptions(canaries=0, inversion_round=0, shadows=4)
    for name in SCENARIOS:
        for seed in args.seeds:
            key = f"{name}/seed={seed}"
            if key in results:
                continue
            spec = scenario.load(Path("attacks/scenarios") / f"{name}.toml", overrides=[f"run.seed={seed}"])
            with tempfile.TemporaryDirectory() as tmp:
                r = audit_scenario(spec, tmp, options)
            mia = r["membership"]
            results[key] = {"scenario": name, "seed": seed, "accuracy": r["accuracy"], "epsilon": r["epsilon_claimed"],
                            "loss_auc": mia["loss_threshold"]["auc"], "lira_auc": mia["lira"]["auc"],
                            "loss_tpr_1pct": mia["loss_threshold"]["tpr_at_1pct_fpr"],
                            "lira_tpr_1pct": mia["lira"]["tpr_at_1pct_fpr"], "bounds": mia.get("bounds")}
            print(key, {k: v for k, v in results[key].items() if k not in ("scenario", "seed")}, flush=True)
            path.write_text(json.dumps(results, indent=1))
    print("| scenario | epsilon | accuracy | loss AUC | LiRA AUC | TPR@1% (best) | DP bound AUC |")
    for name in SCENARIOS:
        rows = [r for r in results.values() if r["scenario"] == name]
        mean = {k: np.mean([r[k] for r in rows]) for k in ("accuracy", "loss_auc", "lira_auc")}
        spread = {k: np.std([r[k] for r in rows]) for k in ("loss_auc", "lira_auc")}
        tpr = np.mean([max(r["loss_tpr_1pct"], r["lira_tpr_1pct"]) for r in rows])
        eps = rows[0]["epsilon"]
        bound = rows[0]["bounds"]["auc"] if rows[0]["bounds"] else None
        print(f"| {name} | {'none' if eps is None else f'{eps:.3g}'} | {mean['accuracy']:.3f} | "
              f"{mean['loss_auc']:.3f} ± {spread['loss_auc']:.3f} | {mean['lira_auc']:.3f} ± {spread['lira_auc']:.3f} | "
              f"{tpr:.3f} | {'none' if bound is None else f'{bound:.3f}'} |")


if __name__ == "__main__":
    main()
