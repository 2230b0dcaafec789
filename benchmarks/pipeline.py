"""Pipeline overhead against the floor: one round of n clients x d parameters.

Floor: numpy's weighted mean of the stacked float32 updates (what FedAvg must do at least).
Measured: Pipeline with Plaintext + Mean, with and without L2Clip + Quantize (wire encoding included).
Prints JSON with median seconds over repeats and the ratio to the floor, all in one process run.

    .venv/bin/python benchmarks/pipeline.py [--clients 20] [--dim 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from secfl import L2Clip, OneGroup, Pipeline, Quantize, Update


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    updates = [Update(i, (rng.normal(size=args.dim) * 0.01).astype(np.float32), weight=float(100 + i))
               for i in range(args.clients)]
    stacked, weights = np.stack([u.values for u in updates]), np.array([u.weight for u in updates])

    def floor() -> None:
        (weights @ stacked) / weights.sum()

    pipelines = {
        "plaintext_mean": Pipeline(clients_per_round=args.clients),
        "clip_quantize_one_group": Pipeline(clients_per_round=args.clients, stages=[L2Clip(1.0), Quantize()],
                                            grouping=OneGroup()),
    }
    floor_s = median_seconds(floor, args.repeats)
    result = {"clients": args.clients, "dim": args.dim, "repeats": args.repeats, "floor_seconds": floor_s}
    for name, pipeline in pipelines.items():
        seconds = median_seconds(lambda p=pipeline: p.run_round(updates, rng=np.random.default_rng(1)), args.repeats)
        result[name] = {"seconds": seconds, "ratio_to_floor": seconds / floor_s}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
