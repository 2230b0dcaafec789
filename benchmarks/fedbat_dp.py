"""FedBAT under differential privacy on MNIST: sample-level DP-SGD through the binarizer, and user-level noise
added before binarization, against FedAvg with the same DP.

Cells (the all20 setting of compression.py: 20 clients, all every round, 1 local epoch, batch 32; the
client lr is 0.5 under DP-SGD, as DP-SGD needs a larger step; server lr 1, no momentum; 10 rounds):
- dpsgd/{fedavg,fedbat,fedbat_secagg}: Opacus DP-SGD in every client (noise multiplier z, clip 1, functorch);
  the epsilon reported is the largest client's after the last round (sample-level, delta 1e-5).
- user/{fedavg,fedbat_secagg}: every client clips its whole update (FedBAT: m / alpha with the public alpha) to
  L2 norm C (1 for FedAvg, 50 for FedBAT's m / alpha: about the norms measured) and adds N(0, z^2 C^2)
  itself (``placement = "client"``): each upload is then DP on its own, the only placement that survives
  the binarization after it (a noise share split over the group would not: the sum of binarized shares is
  not a function of the noisy sum). User-level epsilon of the whole run (RDP, fixed-size sampling of all
  clients, delta 1e-5).

    .venv/bin/python benchmarks/fedbat_dp.py [--seeds 0] [--only user/] [--out benchmarks/results]

Writes fedbat_dp.json (after every cell).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from secfl import scenario
from secfl import engine as server
from secfl.runs import RunDir

ROUNDS = 10
SECURE = {"protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"}}


def base(seed: int, lr: float) -> dict:
    return {"run": {"rounds": ROUNDS, "seed": seed, "clients_per_round": 20},
            "data": {"dataset": "mnist", "num_clients": 20, "partition": {"kind": "iid"}},
            "model": {"kind": "mlp", "options": {"hidden": 128}},
            "client": {"epochs": 1, "batch_size": 32, "lr": lr}, "server": {"lr": 1.0, "momentum": 0.0}}


def cells(seed: int) -> dict[str, dict]:
    out = {}
    for z in (1.0,):
        dp = {**base(seed, 0.5)}
        dp["client"] = {**dp["client"], "dp_sgd": {"noise_multiplier": z, "max_grad_norm": 1.0,
                                                    "grad_sample_mode": "functorch"}}
        out[f"dpsgd/fedavg/z={z}"] = dp
        out[f"dpsgd/fedbat/z={z}"] = {**dp, "method": "fedbat"}
        out[f"dpsgd/fedbat_secagg/z={z}"] = {**dp, **SECURE, "method": "fedbat", "stages": [{"kind": "fedbat_bits"}]}
    for z in (0.05, 0.5):
        noise = {"kind": "gaussian_noise", "noise_multiplier": z, "placement": "client"}
        plain = base(seed, 0.05)
        out[f"user/fedavg/z={z}"] = {**plain, **SECURE, "stages": [
            {"kind": "l2clip", "norm": 1.0}, noise, {"kind": "quantize", "scale": 2.0**16}]}
        # x = m / alpha (alpha = 0.01) measured: entries ~0.12, L2 norm ~51 after one epoch; FedAvg's delta ~1
        out[f"user/fedbat_secagg/z={z}"] = {**plain, **SECURE, "method": "fedbat", "fedbat": {"alpha_update": "fixed"},
                                            "stages": [{"kind": "l2clip", "norm": 50.0}, noise,
                                                       {"kind": "fedbat_bits", "bound": 1000.0, "scale": 256.0}]}
    return out


def run_cell(name: str, spec: dict) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = server.run(scenario.validate({"name": name.replace("/", "-"), **spec}), RunDir(Path(tmp) / "run"))
        rows = RunDir(Path(tmp) / "run").metrics()
    return {"cell": name, "seed": spec["run"]["seed"], "final_accuracy": summary["final_accuracy"],
            "accuracy_curve": [r["accuracy"] for r in rows],
            "client_epsilon": rows[-1].get("client_epsilon"), "user_epsilon": rows[-1].get("epsilon"),
            "bytes_up_per_client": rows[-1]["bytes_up_per_client"], "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", default="", help="run only the cells whose name starts with this; keep the others")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    if args.only and (args.out / "fedbat_dp.json").exists():
        kept = json.loads((args.out / "fedbat_dp.json").read_text())["cells"]
        results = [c for c in kept if not c["cell"].startswith(args.only)]
    for seed in args.seeds:
        for name, spec in cells(seed).items():
            if not name.startswith(args.only):
                continue
            results.append(run_cell(name, spec))
            print(json.dumps({k: v for k, v in results[-1].items() if k != "accuracy_curve"}), flush=True)
            (args.out / "fedbat_dp.json").write_text(json.dumps({"benchmark": "fedbat_dp", "rounds": ROUNDS,
                                                                 "cells": results}, indent=2))


if __name__ == "__main__":
    main()
