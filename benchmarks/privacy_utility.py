"""Privacy vs utility of client-level DP-FedAvg on MNIST: final accuracy at epsilon 1 / 3 / 8 / inf.

Three placements of the same Gaussian mechanism (noise multiplier z solved for the target epsilon by
the PLD accountant before training, Poisson sampling of clients, delta = 1e-5):
- central: the trusted server adds N(0, z^2 C^2) to the plaintext sum;
- distributed: each client adds its share N(0, z^2 C^2 / m) and the sum goes through SecAgg+;
- ddgauss: the distributed discrete Gaussian (rotation, rounding, integer shares, 16-bit ring, SecAgg+),
  accounted in RDP (so its z is solved in RDP, which is looser).
epsilon = inf is plain FedAvg with the same clipping. The accuracy reported is the mean of the last
5 rounds' test accuracy (the noise makes single rounds jumpy); ``epsilon`` is the ledger's after the
last round (with the realized number of noise shares of every round).

    .venv/bin/python benchmarks/privacy_utility.py [--rounds 50] [--seeds 0] [--out benchmarks/results]

Prints JSON and writes privacy_utility.json and privacy_utility.png to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from secfl import scenario
from secfl import engine as server
from secfl.runs import RunDir

EPSILONS = (1.0, 3.0, 8.0, math.inf)
MODES = ("central", "distributed", "ddgauss")
CLIP = 0.3


def spec(mode: str, epsilon: float, rounds: int, seed: int) -> dict:
    """The scenario of one cell."""
    stages: list[dict] = [{"kind": "l2clip", "norm": CLIP}]
    protocol = {"kind": "secagg+"} if mode != "central" else {"kind": "plaintext"}
    if math.isfinite(epsilon):
        if mode == "ddgauss":
            stages = [{"kind": "ddgauss", "clip": CLIP, "bits": 16}]
        else:
            stages.append({"kind": "gaussian_noise", "placement": mode})
    if mode != "central" and stages[-1]["kind"] != "ddgauss":
        stages.append({"kind": "quantize", "scale": 2.0**14})
    privacy = {"target_epsilon": epsilon} if math.isfinite(epsilon) else {}
    return {
        "name": f"dp-{mode}-eps{epsilon:g}",
        "stages": stages, "protocol": protocol, "grouping": {"kind": "one_group"},
        "run": {"rounds": rounds, "seed": seed, "clients_per_round": 50, "sampling": "poisson"},
        "data": {"dataset": "mnist", "num_clients": 500, "partition": {"kind": "iid", "min_per_client": 4}},
        "model": {"kind": "logreg"},
        "client": {"epochs": 2, "batch_size": 8, "lr": 0.1},
        "server": {"lr": 1.0, "momentum": 0.9},
        "privacy": privacy,
    }


def run_cell(mode: str, epsilon: float, rounds: int, seed: int) -> dict:
    start = time.perf_counter()
    cell = scenario.validate(spec(mode, epsilon, rounds, seed))
    with tempfile.TemporaryDirectory() as tmp:
        server.run(cell, RunDir(Path(tmp) / "run"))
        rows = RunDir(Path(tmp) / "run").metrics()
    z = next((s.get("noise_multiplier") for s in cell.stages if "noise_multiplier" in s), None)
    tail = rows[-5:]
    return {"mode": mode, "target_epsilon": epsilon if math.isfinite(epsilon) else None, "seed": seed,
            "noise_multiplier": z, "epsilon": rows[-1].get("epsilon"),
            "accuracy": sum(r["accuracy"] for r in tail) / len(tail), "final_accuracy": rows[-1]["accuracy"],
            "seconds": time.perf_counter() - start}


def plot(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{e:g}" for e in EPSILONS]
    for offset, mode in enumerate(MODES):
        ys = []
        for e in EPSILONS:
            hits = [c["accuracy"] for c in cells if c["mode"] == mode
                    and (c["target_epsilon"] or math.inf) == e]
            ys.append(sum(hits) / len(hits) if hits else math.nan)
        ax.plot(range(len(EPSILONS)), ys, marker="o", label=mode, alpha=0.8, linestyle=["-", "--", ":"][offset])
    ax.set_xticks(range(len(EPSILONS)), labels)
    ax.set_xlabel("target epsilon (delta = 1e-5)")
    ax.set_ylabel("MNIST test accuracy (mean of last 5 rounds)")
    ax.set_title("Client-level DP-FedAvg: 500 clients, q = 0.1, logreg")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    cells = [run_cell(mode, eps, args.rounds, seed)
             for seed in args.seeds for eps in EPSILONS for mode in args.modes
             if not (mode == "ddgauss" and not math.isfinite(eps))]
    result = {"benchmark": "privacy_utility", "rounds": args.rounds, "clip": CLIP, "cells": cells}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "privacy_utility.json").write_text(json.dumps(result, indent=2))
    plot(cells, args.out / "privacy_utility.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
