"""Robust aggregators against their floor (the mean, one Gram product) and against ByzFL in the same run.

For each shape (n = 30, d = 1e6 and n = 100, d = 1e5; f = n // 5; float64 inputs, which is what the
pipeline hands a rule) every rule is timed as the median over repeats of one call, interleaved with
the floors so that machine drift hits all alike. Ratios: to ``X.mean(0)`` and to one ``X @ X.T``.
When ByzFL's source is available (``--byzfl DIR``, the directory holding the ``byzfl`` package; its
package import fails with this torch, so only its aggregator modules are loaded), ByzFL's
implementation of the same rule runs on the same input, with numpy and with torch tensors, and the
ratio to the faster of the two is reported. Definitions differ in places (ByzFL's Krum scores use
n - f - 1 neighbours, its geometric median stops after 3 Weiszfeld steps): the timing is per rule name.

    .venv/bin/python benchmarks/bench_aggregators.py [--byzfl /tmp/byzfl/src] [--repeats 3] [--small]

To get ByzFL's source without installing it: ``pip download byzfl==0.0.11 --no-deps`` and unzip the wheel.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from secfl.aggregators import (AdaptiveClip, Bulyan, CenteredClip, DnC, FLTrust, GeometricMedian, Krum, MajorityVote,
                               Median, MultiKrum, NearestNeighborMixing, StaticClip, TrimmedMean)
from secfl.aggregators.chain import Chain


def timed(call: Callable[[], object], repeats: int) -> float:
    """Median seconds of one call over ``repeats``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_byzfl(root: Path | None):
    """ByzFL's aggregator modules, loaded without running its package __init__ (torchvision)."""
    if root is None or not (root / "byzfl" / "aggregators").is_dir():
        return None
    package = types.ModuleType("byzfl")
    package.__path__ = [str(root / "byzfl")]
    sys.modules["byzfl"] = package
    import byzfl.aggregators as aggregators  # noqa: PLC0415

    return aggregators


def secfl_rules(x: np.ndarray, f: int) -> dict[str, Callable[[], object]]:
    reference = x.mean(axis=0)
    rules = {
        "median": Median(f), "trimmed_mean": TrimmedMean(f), "geometric_median": GeometricMedian(),
        "krum": Krum(f), "multi_krum": MultiKrum(f), "bulyan": Bulyan(f), "centered_clip": CenteredClip(),
        "dnc": DnC(f), "fltrust": FLTrust(reference), "majority_vote": MajorityVote(),
        "nnm": NearestNeighborMixing(f), "static_clip": StaticClip(1.0), "adaptive_clip": AdaptiveClip(f),
        "nnm+trimmed_mean": Chain(TrimmedMean(f), [NearestNeighborMixing(f)]),
    }
    return {name: (lambda rule=rule: rule(x)) for name, rule in rules.items()}


def byzfl_rules(byz, x: np.ndarray, f: int) -> dict[str, dict[str, Callable[[], object]]]:
    """name -> {"numpy": call, "torch": call} for the rules ByzFL has."""
    tensor = torch.from_numpy(x)
    made = {
        "median": lambda: byz.Median(), "trimmed_mean": lambda: byz.TrMean(f=f),
        "geometric_median": lambda: byz.GeometricMedian(), "krum": lambda: byz.Krum(f=f),
        "multi_krum": lambda: byz.MultiKrum(f=f), "centered_clip": lambda: byz.CenteredClipping(),
        "nnm": lambda: byz.NNM(f=f), "static_clip": lambda: byz.Clipping(c=1.0), "adaptive_clip": lambda: byz.ARC(f=f),
    }
    out = {}
    for name, make in made.items():
        # fresh instances (CenteredClipping is stateful) and copies (Clipping and ARC modify their input)
        copy = name in ("static_clip", "adaptive_clip")
        out[name] = {"numpy": (lambda make=make, copy=copy: make()(x.copy() if copy else x)),
                     "torch": (lambda make=make, copy=copy: make()(tensor.clone() if copy else tensor))}
    out["nnm+trimmed_mean"] = {"numpy": lambda: byz.TrMean(f=f)(byz.NNM(f=f)(x)),
                               "torch": lambda: byz.TrMean(f=f)(byz.NNM(f=f)(tensor))}
    return out


def bench_shape(n: int, d: int, repeats: int, byz) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    f = n // 5
    floor_mean = timed(lambda: x.mean(axis=0), repeats)
    floor_gram = timed(lambda: x @ x.T, repeats)
    ours = {name: timed(call, repeats) for name, call in secfl_rules(x, f).items()}
    theirs = {}
    if byz is not None:
        for name, calls in byzfl_rules(byz, x, f).items():
            theirs[name] = {backend: timed(call, max(1, repeats - 1)) for backend, call in calls.items()}
    rows = {}
    for name, seconds in ours.items():
        row = {"seconds": seconds, "x_mean": seconds / floor_mean, "x_gram": seconds / floor_gram}
        if name in theirs:
            best = min(theirs[name].values())
            row.update({"byzfl_seconds": theirs[name], "byzfl_best_over_secfl": best / seconds})
        rows[name] = row
    return {"n": n, "d": d, "f": f, "floor_mean_seconds": floor_mean, "floor_gram_seconds": floor_gram, "rules": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--byzfl", type=Path, default=None, help="directory that contains the byzfl package")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true", help="only n = 100, d = 1e5")
    args = parser.parse_args()
    byz = load_byzfl(args.byzfl)
    shapes = [(100, 100_000)] if args.small else [(30, 1_000_000), (100, 100_000)]
    result = {
        "benchmark": "bench_aggregators", "python": platform.python_version(), "numpy": np.__version__,
        "torch": torch.__version__, "byzfl": "0.0.11 (source)" if byz is not None else None,
        "threads": torch.get_num_threads(),
        "shapes": [bench_shape(n, d, args.repeats, byz) for n, d in shapes],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
