"""The client-side model check (``secfl.fl.model_check``) against crafted models, naive and adaptive.

One FedSGD round on MNIST, as in the imprint and inconsistency papers: ``--clients`` clients (default 20) each
hold ``--shard`` examples (default 128; the check runs on them), take one gradient step (lr 0.05) on a batch of
``--batch`` of them (default 32) on the model the server sent, and the server gets the SUM of the deltas
(weighted by batch size): exactly what a secure sum releases, without DP. For every crafted model it reports
the share of clients whose check refuses it (and which checks fired) and the share of the true examples the
server reconstructs from the sum at PSNR >= 25 dB (``secfl.audit.privacy.imprint.score``), beside the
no-information baseline (the mean image). "Recovered" is what the attack would get if nobody refused.

Models (all ``ImprintNet``: Linear(784, k) -> ReLU -> Linear(k, 10), k = ``--bins``):

* ``imprint``: Fowl et al.'s model (``imprint_model``), recovery by bin differences (``recover``);
* ``imprint+noise s/head``: its rows plus isotropic Gaussian noise of norm ``s`` times the row's;
  ``head``: ``identical`` (``imprint_model``'s head: every column the same vector v), ``shift`` (``v + c_i 1``,
  c_i uniform in [-2, 2]: the columns differ but every unit still gets the same backpropagated scalar
  ``(softmax - onehot) . column``, which the bin differences need) or ``random`` (v plus Gaussian noise of norm 1
  per column), to evade the row, activation and column checks; recovery by bin differences;
* ``trap q``: sparse random trap units (in the spirit of Boenisch et al.): independent random rows, each
  unit's bias at the ``1 - q`` quantile of its own measurement on the server's public data (fires on a share q
  of examples), a random head; no two rows alike. Recovery: ``dW_i / db_i`` per unit (exact when one example
  of the whole round fired it);
* ``inconsistency``: the target gets ``imprint``, the others ``dead_model`` (Pasquini et al.); truth: the
  target's batch; recovery by bin differences;
* ``inconsistency adaptive a``: the target gets ``trap 1/batch``; the others the same model with all but a
  share ``a`` of the units dead (the live ones honest-looking: random rows, zero bias), so every dead unit's
  row of the sum is the target's alone.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_check_evasion.py [--seeds 0 1 2] [--out benchmarks/results]

Writes model_check_evasion.json. About a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl.audit.privacy.image_metrics import Normalization
from secfl.audit.privacy.imprint import ImprintNet, dead_model, imprint_model, recover, score
from secfl.fl.data import load_dataset
from secfl.fl.model_check import check_model

LR = 0.05


def trap_model(public: np.ndarray, k: int, q: float, rng: np.random.Generator, gain: float = 1e-3) -> ImprintNet:
    """Sparse random trap units: random rows, each bias at the 1 - q quantile of its measurement on public data."""
    dim = public[0].size
    model = ImprintNet(tuple(public.shape[1:]), 10, k)
    rows = rng.standard_normal((k, dim)) / np.sqrt(dim)
    thresholds = np.quantile(public.reshape(len(public), -1) @ rows.T, 1 - q, axis=0)
    with torch.no_grad():
        model.imprint.weight.copy_(torch.as_tensor(gain * rows, dtype=torch.float32))
        model.imprint.bias.copy_(torch.as_tensor(-gain * thresholds, dtype=torch.float32))
        model.head.weight.copy_(torch.as_tensor(rng.standard_normal((10, k)) / np.sqrt(k), dtype=torch.float32))
    return model


def noisy_imprint(public: np.ndarray, k: int, scale: float, head: str, rng: np.random.Generator) -> ImprintNet:
    """Fowl et al.'s imprint with every row moved by isotropic noise of norm ``scale`` x the row's norm (noise
    only where every image is blank would leave the units' function unchanged: the activation check catches
    that, see the tests); ``head``: "identical", "shift" or "random" columns."""
    model = imprint_model(tuple(public.shape[1:]), 10, bins=k, public_x=public)
    with torch.no_grad():
        w = model.imprint.weight.double().numpy()
        noise = rng.standard_normal(w.shape)
        noise *= (scale * np.linalg.norm(w, axis=1) / np.linalg.norm(noise, axis=1))[:, None]
        model.imprint.weight.copy_(torch.as_tensor(w + noise, dtype=torch.float32))
        if head == "random":
            cols = rng.standard_normal((10, k))
            model.head.weight += torch.as_tensor(cols / np.linalg.norm(cols, axis=0), dtype=torch.float32)
        elif head == "shift":  # v + c_i * 1: the backpropagated scalar (p - onehot) . column stays the same
            model.head.weight += torch.as_tensor(rng.uniform(-2, 2, size=k), dtype=torch.float32)[None, :]
    return model


def killed(model: ImprintNet, alive: float, rng: np.random.Generator) -> tuple[ImprintNet, np.ndarray]:
    """A copy of ``model`` with all but a share ``alive`` of the units dead (zero row, bias -1); the live ones are
    honest-looking (random rows, zero bias). Returns it and the mask of the dead units."""
    copy = ImprintNet(model.input_shape, 10, model.bins)
    copy.load_state_dict(model.state_dict())
    k, dim = model.bins, model.imprint.in_features
    dead = np.ones(k, dtype=bool)
    dead[rng.choice(k, size=int(round(alive * k)), replace=False)] = False
    with torch.no_grad():
        copy.imprint.weight[torch.as_tensor(dead)] = 0.0
        copy.imprint.bias[torch.as_tensor(dead)] = -1.0
        live = torch.as_tensor(~dead)
        copy.imprint.weight[live] = torch.as_tensor(rng.standard_normal((int(live.sum()), dim)) / np.sqrt(dim),
                                                    dtype=torch.float32)
        copy.imprint.bias[live] = 0.0
    return copy, dead


def delta(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return (-LR * torch.cat([g.reshape(-1) for g in grads])).detach().double().numpy() * len(y)


def per_unit(total: np.ndarray, model: ImprintNet, units: np.ndarray | None = None) -> np.ndarray:
    """Trap-unit reconstruction: dW_i / db_i for every unit with db_i != 0 (only ``units`` if given)."""
    k, dim = model.bins, model.imprint.in_features
    w, b = total[: k * dim].reshape(k, dim), total[k * dim: k * dim + k]
    keep = np.abs(b) > 1e-12
    if units is not None:
        keep &= units
    return (w[keep] / b[keep, None]).reshape(-1, *model.input_shape)


def attack(name: str, models: list[ImprintNet], reconstruct, shards, batches, data, truth_of: list[int],
           norm: Normalization, mean_image: np.ndarray) -> dict[str, Any]:
    """Check every client's model on its shard, sum the deltas, reconstruct, score against the truth."""
    reasons: Counter[str] = Counter()
    refused = 0
    for model, shard in zip(models, shards, strict=True):
        found = check_model(model, data.x_train[shard], data.y_train[shard])
        refused += bool(found)
        reasons.update({r.split(":")[0] + ": " + ("rows" if " rows " in r else "columns" if " columns " in r else
                                                  "units" if " units " in r else "gradient") for r in found})
    total = sum(delta(m, data.x_train[b], data.y_train[b]) for m, b in zip(models, batches, strict=True))
    candidates = np.clip(norm.to_pixels(reconstruct(total)), 0.0, 1.0)
    truth = np.clip(norm.to_pixels(data.x_train[np.concatenate([batches[i] for i in truth_of])]), 0.0, 1.0)
    summary = score(candidates, truth, mean_image=mean_image).summary
    return {"model": name, "clients": len(models), "refused": refused / len(models), "checks_fired": dict(reasons),
            "recovered": summary["fraction"], "baseline_mean_image": summary["fraction_mean_image"],
            "examples": int(summary["examples"]), "median_psnr": summary["median_psnr"]}


def one_seed(seed: int, args: argparse.Namespace, data, norm: Normalization) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 22])
    public = data.x_test
    mean_image = np.clip(norm.to_pixels(public.mean(axis=0)), 0.0, 1.0)
    picked = rng.choice(len(data.y_train), size=args.clients * args.shard, replace=False)
    shards = [picked[i * args.shard: (i + 1) * args.shard] for i in range(args.clients)]
    batches = [s[: args.batch] for s in shards]
    everyone, n, k = list(range(args.clients)), args.clients, args.bins
    shape = tuple(data.input_shape)
    out = []

    def run(name, models, reconstruct, truth_of=everyone):
        row = attack(name, models, reconstruct, shards, batches, data, truth_of, norm, mean_image)
        out.append({"seed": seed, **row})
        print(f"seed {seed} {name:34} refused {row['refused']:5.0%}  recovered {row['recovered']:5.1%} "
              f"(baseline {row['baseline_mean_image']:.1%})  {row['checks_fired']}", flush=True)

    trap = imprint_model(shape, 10, bins=k, public_x=public)
    run("imprint", [trap] * n, lambda s: recover(s, trap)[0])
    for scale in args.noise:
        for head in ("identical", "shift", "random"):
            model = noisy_imprint(public, k, scale, head, rng)
            run(f"imprint+noise {scale:g}/{head}", [model] * n, lambda s, m=model: recover(s, m)[0])
    for q in args.rates:
        model = trap_model(public, k, q, rng)
        run(f"trap q={q:.4g}", [model] * n, lambda s, m=model: per_unit(s, m))
    dead = dead_model(shape, 10, bins=k)
    run("inconsistency", [trap] + [dead] * (n - 1), lambda s: recover(s, trap)[0], truth_of=[0])
    target = trap_model(public, k, 1 / args.batch, rng)
    for alive in args.alive:
        other, mask = killed(target, alive, rng)
        run(f"inconsistency adaptive a={alive:g}", [target] + [other] * (n - 1),
            lambda s, m=target, d=mask: per_unit(s, m, d), truth_of=[0])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--shard", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bins", type=int, default=1024)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1 / 2560, 1 / 640, 1 / 160])
    parser.add_argument("--alive", type=float, nargs="+", default=[0.05, 0.15, 0.5])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    data = load_dataset("mnist", seed=0)
    norm = Normalization.infer(data.x_train)
    rows = [row for seed in args.seeds for row in one_seed(seed, args, data, norm)]
    table: dict[str, dict[str, float]] = {}
    for row in rows:
        entry = table.setdefault(row["model"], {"refused": 0.0, "recovered": 0.0, "baseline": 0.0, "runs": 0})
        entry["refused"] += row["refused"]
        entry["recovered"] += row["recovered"]
        entry["baseline"] += row["baseline_mean_image"]
        entry["runs"] += 1
    print(f"\n{'model (mean over seeds)':36} {'refused':>8} {'recovered':>10} {'baseline':>9}")
    for name, e in table.items():
        r = e["runs"]
        print(f"{name:36} {e['refused'] / r:8.0%} {e['recovered'] / r:10.1%} {e['baseline'] / r:9.1%}")
    print(f"({time.perf_counter() - start:.0f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    command = ("OMP_NUM_THREADS=1 .venv/bin/python benchmarks/model_check_evasion.py --seeds "
               + " ".join(map(str, args.seeds)))
    (args.out / "model_check_evasion.json").write_text(json.dumps(
        {"command": command, "settings": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows},
        indent=1, default=str))


if __name__ == "__main__":
    main()
