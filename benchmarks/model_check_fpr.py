"""False-positive rate of the client-side model check (``secfl.fl.model_check``) on honest models.

Two populations of honest (model, client data) pairs, each checked with the default ``ModelCheck``:

* initialisation: every model kind of the registry (mlp, cnn, logreg, and a deeper mlp and a narrower cnn)
  on MNIST and digits, over ``--init-seeds`` seeds; each model is checked on the data of one client of a
  20-client partition (IID, or Dirichlet alpha 0.1: small label-skewed clients), a different client per seed;
* training trajectories: the embedded engine trains FedAvg for ``--rounds`` rounds (10 clients, 5 per round,
  IID and Dirichlet 0.3) with ``--seeds`` seeds; before every round, the global model the clients receive is
  checked on the data of every client (sampled or not).

It prints a table (checks, refusals, clients with fewer than ``min_examples`` examples, on which the ReLU checks
do not run, and the largest value each statistic reached beside its limit: the margin), and writes
``model_check_fpr.json``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_check_fpr.py [--init-seeds 50] [--seeds 0 1 2] \\
        [--rounds 20] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl import engine, scenario
from secfl.fl.data import load_dataset
from secfl.fl.model_check import ModelCheck, inspect_model
from secfl.fl.models import build_model
from secfl.fl.partition import partition
from secfl.hooks import RoundContext, RoundHook
from secfl.runs import RunDir

MODELS: list[tuple[str, dict[str, Any]]] = [("mlp", {}), ("mlp", {"hidden": [256, 128]}), ("cnn", {}),
                                           ("cnn", {"channels": 8, "groups": 2, "hidden": 32}), ("logreg", {})]
TRAJECTORIES: list[tuple[str, str, dict[str, Any], str]] = [
    ("digits", "mlp", {"hidden": 64}, "iid"), ("digits", "cnn", {}, "dirichlet"), ("digits", "logreg", {}, "iid"),
    ("mnist", "mlp", {}, "iid"), ("mnist", "mlp", {}, "dirichlet"), ("mnist", "cnn", {"channels": 8, "groups": 2,
                                                                                      "hidden": 32}, "iid")]


class Tally:
    """Checks, refusals (with their reasons) and the largest value of each statistic, per population."""

    def __init__(self) -> None:
        self.checks = self.refusals = self.few = 0  # few: clients under min_examples (no ReLU checks)
        self.reasons: dict[str, int] = defaultdict(int)
        self.largest: dict[str, float] = defaultdict(float)
        self.limits: dict[str, float] = {}

    def check(self, model: torch.nn.Module, x: np.ndarray, y: np.ndarray, options: ModelCheck) -> None:
        findings = inspect_model(model, x, y, options=options)
        self.checks += 1
        self.few += len(y) < options.min_examples
        refused = [f for f in findings if f.refused]
        self.refusals += bool(refused)
        for f in refused:
            self.reasons[f.reason] += 1
        for f in findings:
            if f.check in ("duplicate_rows", "duplicate_units", "dead_units") or f.where == "<model> share":
                key = f.check if f.where != "<model> share" else "zero_grad_share"
                self.largest[key] = max(self.largest[key], f.value)
                self.limits[key] = f.limit

    def row(self) -> dict[str, Any]:
        return {"checks": self.checks, "refusals": self.refusals, "clients_under_min_examples": self.few,
                "fpr": self.refusals / self.checks if self.checks else float("nan"),
                "largest": dict(self.largest), "limits": dict(self.limits), "reasons": dict(self.reasons)}


def initialisation(datasets: dict[str, Any], seeds: int, options: ModelCheck) -> dict[str, Any]:
    out = {}
    for name, data in datasets.items():
        shards = {kind: partition(data.y_train, num_clients=20, kind=kind, rng=np.random.default_rng([0, 1]),
                                  min_per_client=2, **({"alpha": 0.1} if kind == "dirichlet" else {}))
                  for kind in ("iid", "dirichlet")}
        for kind, params in MODELS:
            for split, parts in shards.items():
                tally = Tally()
                for seed in range(seeds):
                    model = build_model(kind, input_shape=data.input_shape, num_classes=data.num_classes, seed=seed,
                                        **params)
                    idx = parts[seed % len(parts)]
                    tally.check(model, data.x_train[idx], data.y_train[idx], options)
                out[f"init/{name}/{kind}{json.dumps(params) if params else ''}/{split}"] = tally.row()
    return out


class CheckEveryClient(RoundHook):
    """Before every round: the model the clients receive, checked on every client's data."""

    def __init__(self, tally: Tally, options: ModelCheck) -> None:
        self.tally, self.options = tally, options

    def before_round(self, ctx: RoundContext) -> None:
        for idx in ctx.shards:
            if len(idx):
                self.tally.check(ctx.model, ctx.data.x_train[idx], ctx.data.y_train[idx], self.options)


def trajectories(seeds: list[int], rounds: int, options: ModelCheck) -> dict[str, Any]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dataset, kind, params, split in TRAJECTORIES:
            tally, accuracy = Tally(), []
            for seed in seeds:
                spec = scenario.Scenario.model_validate({
                    "name": f"fpr-{dataset}-{kind}-{split}-{seed}",
                    "run": {"rounds": rounds, "seed": seed, "clients_per_round": 5},
                    "data": {"dataset": dataset, "num_clients": 10,
                             "partition": {"kind": split, **({"alpha": 0.3} if split == "dirichlet" else {})}},
                    "model": {"kind": kind, "options": params},
                    "client": {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.5},
                    "server": {"lr": 1.0, "momentum": 0.5}})
                summary = engine.run(spec, RunDir(Path(tmp) / spec.name), hooks=[CheckEveryClient(tally, options)])
                accuracy.append(summary["final_accuracy"])
            out[f"train/{dataset}/{kind}{json.dumps(params) if params else ''}/{split}"] = {
                **tally.row(), "final_accuracy": accuracy}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init-seeds", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = ModelCheck()
    start = time.perf_counter()
    datasets = {name: load_dataset(name, seed=0) for name in ("mnist", "digits")}
    results = {**initialisation(datasets, args.init_seeds, options), **trajectories(args.seeds, args.rounds, options)}
    total = {"checks": sum(r["checks"] for r in results.values()),
             "refusals": sum(r["refusals"] for r in results.values())}
    print(f"{'population':66} {'checks':>7} {'refused':>7} {'small':>5}  largest statistic / limit")
    for name, r in results.items():
        margin = ", ".join(f"{k} {v:.2f}/{r['limits'][k]:.2f}" for k, v in sorted(r["largest"].items()))
        print(f"{name:66} {r['checks']:7d} {r['refusals']:7d} {r['clients_under_min_examples']:5d}  {margin}")
    print(f"{'total':66} {total['checks']:7d} {total['refusals']:7d}  ({time.perf_counter() - start:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"command": "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_check_fpr.py "
               f"--init-seeds {args.init_seeds} --seeds {' '.join(map(str, args.seeds))} --rounds {args.rounds}",
               "options": asdict(options), "total": total, "results": results}
    (args.out / "model_check_fpr.json").write_text(json.dumps(payload, indent=1, default=float))


if __name__ == "__main__":
    main()
