"""A malicious server attacks through the model (issue 22): the fraction of examples it reconstructs, per defense.

Attacks (``secfl.audit.privacy.malicious_model``): trap weights (Fowl et al. ICLR 2022: one imprint model for
everyone) and model inconsistency (Pasquini et al. CCS 2022: the imprint model to the target, a zero-update
model to the others). One FedSGD round: each client takes one gradient step (lr 0.1) on a batch of 8 of its
own MNIST digits and its update goes through the configuration's real pipeline. Grid: both attacks x
{plaintext (each update seen alone), SecAgg+ sum of 5, SecAgg+ sum of 20, buckets of 4 under SecAgg+ (20
clients)} x {binding off, on} x {no DP, distributed DP at epsilon 8, 3}, and without DP the client-side
model check (``client.model_check``: each client refuses a model with imprint structure or a zero update on
its data). Data: MNIST, 100 clients (IID);
the round has 20 clients except "SecAgg+ sum of 5". Without DP the secure configurations clip to 1 and
quantize (SecAgg+ sums ring elements); plaintext sends raw updates. DP: clip 1, distributed Gaussian noise
with z solved for (epsilon, 1e-5) over 20 rounds of fixed-size sampling of that round size, quantize.
Recovered: best reconstruction at PSNR >= 25 dB. Imprint layer: 256 bins (``--bins``); two sweeps beside:
the bin count for trap weights on the secure sum of 20 without DP, and few bins (the signal concentrated in
few units) against DP at epsilon 8; and a sweep of the noise multiplier z itself, to find where the
attack starts to work (with the epsilon that z gives over the 20 rounds).

``--accuracy`` also trains the honest scenario (MLP(64), 20 rounds, 1 local epoch of batch 8) with the
engine under each defense and reports its final test accuracy (the defenses' accuracy cost).

    .venv/bin/python benchmarks/malicious_model_table.py [--seeds 0 1 2] [--accuracy] [--out benchmarks/results]

Writes malicious_model_table.json and prints the markdown tables. About 8 minutes on 2 cores with --accuracy.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl import engine, scenario
from secfl.audit.privacy.malicious_model import ATTACKS, MaliciousRound, population, run_malicious_round
from secfl.runs import RunDir, atomic_write

CONFIGS = {  # name: (protocol, grouping, clients in the round)
    "plaintext (each update alone)": ("plaintext", {"kind": "individual"}, 20),
    "SecAgg+ sum of 5": ("secagg+", {"kind": "one_group"}, 5),
    "SecAgg+ sum of 20": ("secagg+", {"kind": "one_group"}, 20),
    "buckets of 4 (SecAgg+, 20 clients)": ("secagg+", {"kind": "buckets", "size": 4}, 20),
}
PRIVACY = {"no DP": None, "DP eps 8": 8.0, "DP eps 3": 3.0}


def build(config: str, epsilon: float | None, *, z: float | None = None, check: bool = False) -> scenario.Scenario:
    """The configuration at ``epsilon`` (z solved), or with noise multiplier ``z`` given (no target); ``check``:
    the clients run the client-side model check (``client.model_check``)."""
    protocol, grouping, clients = CONFIGS[config]
    if epsilon is not None or z is not None:
        noise = {"kind": "gaussian_noise", "placement": "distributed", **({"noise_multiplier": z} if z else {})}
        stages = [{"kind": "l2clip", "norm": 1.0}, noise, {"kind": "quantize", "scale": 65536.0}]
    else:
        stages = [] if protocol == "plaintext" else [{"kind": "l2clip", "norm": 1.0},
                                                     {"kind": "quantize", "scale": 65536.0}]
    data = {"name": "malicious-model", "stages": stages, "protocol": {"kind": protocol}, "grouping": grouping,
            "run": {"rounds": 20, "clients_per_round": clients, "seed": 0},
            "data": {"dataset": "mnist", "num_clients": 100, "partition": {"kind": "iid"}},
            "model": {"kind": "mlp", "options": {"hidden": 64}},
            "client": {"epochs": 1, "batch_size": 8, "lr": 0.1, "model_check": check}}
    if epsilon is not None:
        data["privacy"] = {"target_epsilon": epsilon}
    return scenario.validate(data)


def cell(spec: scenario.Scenario, pop: Any, *, attack: str, clients: int, bins: int, binding: bool,
         seeds: list[int]) -> dict[str, Any]:
    runs = [run_malicious_round(spec, MaliciousRound(attack, clients, bins=bins, binding=binding, seed=s),
                                data=pop).summary for s in seeds]  # model check: the scenario's client.model_check
    keep = ("fraction", "recovered", "examples", "median_psnr", "fraction_mean_image", "fraction_black",
            "psnr_mean_image", "psnr_black", "refused", "excluded", "noise_multiplier", "largest_sum", "groups",
            "model_refusals")
    return {"fraction": float(np.mean([r["fraction"] for r in runs])),
            "fraction_min": float(min(r["fraction"] for r in runs)),
            "fraction_max": float(max(r["fraction"] for r in runs)),
            "baseline": float(max(max(r["fraction_mean_image"], r["fraction_black"]) for r in runs)),
            "refused": sum(r["refused"] is not None for r in runs),
            "excluded": sum(len(r.get("excluded") or []) for r in runs),
            "runs": [{k: r.get(k) for k in keep} for r in runs]}


def accuracy(config: str, epsilon: float | None, seeds: list[int], *, check: bool = False) -> float:
    spec = build(config, epsilon, check=check)
    values = []
    for seed in seeds:
        seeded = spec.model_copy(update={"run": spec.run.model_copy(update={"seed": seed})})
        with tempfile.TemporaryDirectory() as tmp:
            values.append(engine.run(seeded, RunDir(Path(tmp) / "run"))["final_accuracy"])
    return float(np.mean(values))


def epsilon_of(spec: scenario.Scenario) -> float:
    """The client-level epsilon (delta 1e-5) of the scenario's 20 rounds, as its ledger would count them."""
    return spec.accountant().epsilon_of([(spec.build_pipeline().dp_event(), spec.run.rounds)],
                                        sample_rate=spec.sample_rate, delta=spec.privacy.delta)


def _fmt(c: dict[str, Any]) -> str:
    text = f"{c['fraction']:.2f}"
    if c["fraction_max"] - c["fraction_min"] > 0.005:
        text += f" ({c['fraction_min']:.2f}-{c['fraction_max']:.2f})"
    if c["refused"]:
        text += f", refused {c['refused']}x"
    elif c["excluded"]:
        text += ", target excluded"
    return text


def tables(results: dict[str, Any]) -> str:
    head = "| attack | configuration | " + " | ".join(f"{p}, binding {b}" for p in PRIVACY for b in ("off", "on"))
    lines = [head + " | no DP, binding off, model check |", "|" + "---|" * (3 + 2 * len(PRIVACY))]
    for attack in ATTACKS:
        for config in CONFIGS:
            row = [results["grid"][f"{attack}|{config}|{p}|{b}"] for p in PRIVACY for b in (False, True)]
            row.append(results["grid"][f"{attack}|{config}|no DP|check"])
            lines.append(f"| {attack} | {config} | " + " | ".join(_fmt(c) for c in row) + " |")
    base = max(c["baseline"] for c in results["grid"].values())
    z = {p: results["grid"][f"trap_weights|SecAgg+ sum of 20|{p}|False"]["runs"][0]["noise_multiplier"]
         for p in PRIVACY if PRIVACY[p] is not None}
    lines += ["", f"No-information baselines (public mean image, black image) at 25 dB: at most {base:.2f} in every "
              f"cell. Noise multiplier z on the sum of 20: {', '.join(f'{p}: {v:.2f}' for p, v in z.items())}.", ""]
    lines += ["| bins (trap weights, SecAgg+ sum of 20 = 160 digits, no DP) | " + " | ".join(
        str(b) for b in results["bins_sweep"]) + " |", "|---|" + "---|" * len(results["bins_sweep"]),
        "| fraction recovered | " + " | ".join(_fmt(c) for c in results["bins_sweep"].values()) + " |", ""]
    lines += ["| bins (DP eps 8, one client's update alone, inconsistency) | " + " | ".join(
        str(b) for b in results["dp_bins"]) + " |", "|---|" + "---|" * len(results["dp_bins"]),
        "| fraction recovered | " + " | ".join(_fmt(c) for c in results["dp_bins"].values()) + " |", ""]
    sweep = results["noise_sweep"]
    lines += ["| noise multiplier z (epsilon over 20 rounds) | " + " | ".join(
        f"{z} ({v['epsilon']:.3g})" for z, v in sweep.items()) + " |", "|---|" + "---|" * len(sweep)]
    for name in ("trap_weights, SecAgg+ sum of 20", "inconsistency, plaintext (one update)"):
        lines.append(f"| {name} | " + " | ".join(_fmt(v[name]) for v in sweep.values()) + " |")
    lines.append("")
    if "accuracy" in results:
        lines += ["| honest training under | final accuracy (20 rounds) |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in results["accuracy"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--accuracy", action="store_true", help="also train the honest scenario per defense")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"seeds": args.seeds, "bins": args.bins, "grid": {}}
    pop = population(build("SecAgg+ sum of 20", None))  # one partition for every cell (same data and seed)
    for config, (_, _, clients) in CONFIGS.items():
        for privacy, epsilon in PRIVACY.items():
            spec = build(config, epsilon)
            for attack in ATTACKS:
                for binding in (False, True):
                    results["grid"][f"{attack}|{config}|{privacy}|{binding}"] = cell(
                        spec, pop, attack=attack, clients=clients, bins=args.bins, binding=binding, seeds=args.seeds)
            print(f"done: {config}, {privacy}", flush=True)
        checked = build(config, None, check=True)
        for attack in ATTACKS:
            results["grid"][f"{attack}|{config}|no DP|check"] = cell(
                checked, pop, attack=attack, clients=clients, bins=args.bins, binding=False, seeds=args.seeds)
    spec = build("SecAgg+ sum of 20", None)
    results["bins_sweep"] = {b: cell(spec, pop, attack="trap_weights", clients=20, bins=b, binding=False,
                                     seeds=args.seeds) for b in (64, 128, 256, 512, 1024)}
    spec = build("plaintext (each update alone)", 8.0)
    results["dp_bins"] = {b: cell(spec, pop, attack="inconsistency", clients=20, bins=b, binding=False,
                                  seeds=args.seeds) for b in (2, 8, 32, 256)}
    results["noise_sweep"] = {}
    for z in (1e-5, 1e-4, 3e-4, 1e-3, 1e-2):
        secure, plain = build("SecAgg+ sum of 20", None, z=z), build("plaintext (each update alone)", None, z=z)
        results["noise_sweep"][z] = {
            "epsilon": epsilon_of(secure),
            "trap_weights, SecAgg+ sum of 20": cell(secure, pop, attack="trap_weights", clients=20, bins=args.bins,
                                                    binding=False, seeds=args.seeds),
            "inconsistency, plaintext (one update)": cell(plain, pop, attack="inconsistency", clients=20,
                                                          bins=args.bins, binding=False, seeds=args.seeds)}
    if args.accuracy:
        results["accuracy"] = {
            "plaintext, no defense": accuracy("plaintext (each update alone)", None, args.seeds),
            "SecAgg+ sum of 20, clip 1 + quantize (binding on)": accuracy("SecAgg+ sum of 20", None, args.seeds),
            "SecAgg+ sum of 20, clip 1 + quantize, binding + model check": accuracy("SecAgg+ sum of 20", None,
                                                                                  args.seeds, check=True),
            "SecAgg+ sum of 20 + distributed DP eps 8": accuracy("SecAgg+ sum of 20", 8.0, args.seeds),
            "SecAgg+ sum of 20 + distributed DP eps 3": accuracy("SecAgg+ sum of 20", 3.0, args.seeds)}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "malicious_model_table.json", json.dumps(results, indent=1, default=str).encode())
    print(tables(results))


if __name__ == "__main__":
    main()
