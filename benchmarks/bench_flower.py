"""secfl over Flower's simulation engine against the embedded engine, on the same scenario and seed.

Runs ``secfl/scenarios/demo.toml`` (MNIST 5k, 20 clients, MLP-128, SecAgg+ over one group) for ``--rounds``
rounds, embedded first, then through ``secfl.integrations.flower.simulate`` (Ray, one SuperNode per client,
secfl's own apps). Reports per round: wall seconds (median over rounds 2..R: round 1 of Flower also enrolls the
nodes), and the ratio Flower / embedded; bytes up per client (Flower: the protocol's bytes plus each message's
header, as ``RemoteServer`` counts them; embedded: the protocol's own count) and their ratio; whether the two
runs' accuracy curves are identical. Ray's start-up and shut-down are outside the rounds and reported apart.
Prints JSON.

    .venv/bin/python benchmarks/bench_flower.py [--rounds 5] [--clients 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from secfl import engine, scenario  # noqa: E402
from secfl.runs import RunDir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-flower-"))
    os.environ.setdefault("FLWR_HOME", str(tmp / "flwr"))
    from secfl.integrations.flower import simulate

    spec = scenario.load(ROOT / "secfl/scenarios/demo.toml",
                         overrides=[f"run.rounds={args.rounds}", f"data.num_clients={args.clients}",
                                    f"run.clients_per_round={args.clients}"])
    start = time.perf_counter()
    engine.run(spec, RunDir(tmp / "embedded"))
    embedded_total = time.perf_counter() - start
    start = time.perf_counter()
    simulate(spec, RunDir(tmp / "flower"))
    flower_total = time.perf_counter() - start
    emb, flo = RunDir(tmp / "embedded").metrics(), RunDir(tmp / "flower").metrics()
    per_round = {name: statistics.median(r["seconds"] for r in rows[1:]) for name, rows in
                 (("embedded", emb), ("flower", flo))}
    up = {name: statistics.median(r["bytes_up_per_client"] for r in rows) for name, rows in
          (("embedded", emb), ("flower", flo))}
    print(json.dumps({
        "scenario": "demo.toml", "clients": args.clients, "rounds": args.rounds,
        "seconds_per_round": per_round, "flower_over_embedded": per_round["flower"] / per_round["embedded"],
        "bytes_up_per_client": up, "bytes_flower_over_protocol": up["flower"] / up["embedded"],
        "flower_round1_seconds": flo[0]["seconds"],
        "startup_and_shutdown_seconds": flower_total - sum(r["seconds"] for r in flo),
        "embedded_total_seconds": embedded_total, "flower_total_seconds": flower_total,
        "same_accuracy_curve": [r["accuracy"] for r in emb] == [r["accuracy"] for r in flo],
    }, indent=1))


if __name__ == "__main__":
    main()
