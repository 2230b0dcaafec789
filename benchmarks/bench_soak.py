"""Soak test, run before each release: a long secure-noise run that must finish every round.

The setting of the crash it guards against (a ChaCha20 counter overflow in round 127 of a 200-round
run): MNIST 5k, 100 clients, MLP-128 (101,770 parameters), distributed Gaussian noise from the OS
CSPRNG through SecAgg+ in buckets of --group clients, many rounds. In round 127 of 200
(--crash-at) the run is killed inside a noise draw, as the bug did, and resumed with the real
code: every round must then be in metrics.jsonl exactly once, the finished rounds as first written.
Every CSPRNG request is counted (calls and keystream bytes); --near-boundary starts each one 3
blocks before the 2^32-block counter limit, so every request crosses it (the split onto the next
nonce, at full scale).

    .venv/bin/python benchmarks/bench_soak.py [--rounds 200] [--clients-per-round 10] [--group 5]
        [--crash-at N] [--near-boundary] [--out DIR]

Progress (round, elapsed, estimated time left) goes to stderr; the result is JSON on stdout, and the
script exits non-zero if a round is missing or repeated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from secfl import scenario
from secfl import engine as server
from secfl.hazmat import csprng, keystream
from secfl.runs import RunDir


class SimulatedCrash(Exception):
    """Raised inside a CSPRNG request to kill the run mid-round."""


def spec(rounds: int, clients_per_round: int, group: int, seed: int) -> scenario.Scenario:
    return scenario.validate({
        "name": "soak",
        "stages": [{"kind": "l2clip", "norm": 0.3},
                   {"kind": "gaussian_noise", "noise_multiplier": 1.0, "placement": "distributed"},
                   {"kind": "quantize", "scale": 16384.0}],
        "protocol": {"kind": "secagg+"},
        "grouping": {"kind": "buckets", "size": group},
        "run": {"rounds": rounds, "seed": seed, "clients_per_round": clients_per_round, "sampling": "fixed"},
        "data": {"dataset": "mnist", "num_clients": 100},
        "model": {"kind": "mlp", "options": {"hidden": 128}},
        "client": {"epochs": 1, "batch_size": 32, "lr": 0.05},
        "server": {"lr": 1.0, "momentum": 0.5},
    })


class Meter:
    """Wraps ``csprng.random_bytes``: counts requests and bytes, can crash at one request."""

    def __init__(self, near_boundary: bool) -> None:
        self.real, self.near_boundary = csprng.random_bytes, near_boundary
        self.calls = self.bytes = self.largest = 0
        self.crash_at: int | None = None

    def __call__(self, nbytes: int) -> bytes:
        self.calls += 1
        if self.calls == self.crash_at:
            self.crash_at = None
            raise SimulatedCrash(f"simulated crash at CSPRNG request {self.calls}")
        if self.near_boundary:
            out = keystream.chacha20(os.urandom(32), nbytes, start_block=keystream.COUNTER_LIMIT - 3)
        else:
            out = self.real(nbytes)
        self.bytes += len(out)
        self.largest = max(self.largest, len(out))
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--clients-per-round", type=int, default=10)
    parser.add_argument("--group", type=int, default=5, help="SecAgg+ bucket size")
    parser.add_argument("--crash-at", type=int, default=None,
                        help="round killed mid-noise (default 127 of 200, scaled to --rounds; 0: none)")
    parser.add_argument("--near-boundary", action="store_true", help="start every CSPRNG request near 2^32 blocks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args()
    crash_round = max(1, args.rounds * 127 // 200) if args.crash_at is None else args.crash_at
    spec_ = spec(args.rounds, args.clients_per_round, args.group, args.seed)
    meter = Meter(args.near_boundary)
    csprng.random_bytes = meter  # every noise draw goes through csprng.random_bytes
    start = time.perf_counter()

    def progress(row: dict) -> None:
        r = row["round"]
        if r == crash_round - 1:
            meter.crash_at = meter.calls + 2  # mid-round: one client of the next round has drawn its noise
        if r % 10 == 0 or r == args.rounds:
            elapsed = time.perf_counter() - start
            left = elapsed / r * (args.rounds - r)
            print(f"round {r}/{args.rounds} accuracy {row['accuracy']:.4f} epsilon {row['epsilon']:.3g} "
                  f"elapsed {elapsed:.0f} s, about {left:.0f} s left", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = RunDir(args.out or Path(tmp) / "soak")
        crashed, kept, resumed_at = None, "", None
        if crash_round == 1:
            meter.crash_at = 2
        try:
            server.run(spec_, run_dir, on_round=progress)
        except SimulatedCrash as exc:
            crashed, kept = str(exc), run_dir.metrics_path.read_text()
            resumed_at = len(run_dir.metrics()) + 1
            print(f"{crashed} in round {resumed_at}; resuming", file=sys.stderr, flush=True)
            server.run(spec_, run_dir, resume=True, on_round=progress)
        rows, text = run_dir.metrics(), run_dir.metrics_path.read_text()
    seconds = time.perf_counter() - start
    once = [r["round"] for r in rows] == list(range(1, args.rounds + 1))
    ok = once and text.startswith(kept)  # and the rounds finished before the crash are kept as written
    result = {
        "rounds": args.rounds, "rounds_finished": len(rows), "every_round_once": once,
        "finished_rounds_kept": text.startswith(kept), "crash": crashed, "resumed_from_round": resumed_at,
        "num_params": spec_.model_dim(), "clients_per_round": args.clients_per_round, "group": args.group,
        "near_boundary": args.near_boundary, "csprng_requests": meter.calls,
        "keystream_bytes": meter.bytes, "largest_request_bytes": meter.largest,
        "final_accuracy": rows[-1]["accuracy"] if rows else None,
        "final_epsilon": rows[-1]["epsilon"] if rows else None,
        "seconds": round(seconds, 1), "seconds_per_round": round(seconds / max(len(rows), 1), 3),
    }
    print(json.dumps(result, indent=2))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
