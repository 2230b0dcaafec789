"""Tables for the AutoFLIP suites from their bench directories (the README and attacks/README.md numbers).

    .venv/bin/python benchmarks/autoflip_tables.py runs/autoflip            # methods: accuracy, FLOPs, uplink
    .venv/bin/python benchmarks/autoflip_tables.py runs/autoflip-attacks    # attacks x defences: accuracy, ASR

Every number is a mean over the seeds (± the sample standard deviation over seeds when there are several):
the final test accuracy, the mean of the last 5 rounds' accuracy, the backdoor success rate (ASR) of the
last round, the pruned fraction, "mask moved" (attack suites: the fraction of coordinates whose keep/prune decision
differs from the same seed and defence without attack, read from the checkpoints), client FLOPs per local step relative to the unpruned model's (counted from
the compacted architecture), and uplink bytes per round relative to FedAvg of the same model and seed.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from cells import cell_of as _cell, fmt as _fmt, rows_of as _rows


def _keep(path: Path):
    from secfl.runs import load_checkpoint  # torch: only for the attack tables

    hooks = load_checkpoint(path / "checkpoint.pt").get("hooks") or [None]
    return hooks[0]["keep"].numpy() if hooks[0] and "keep" in hooks[0] else None


def _moved(path: Path, cell: dict[str, str], cells: dict[Path, dict[str, str]]) -> float | None:
    """The fraction of the mask that differs from the no-attack cell of the same seed and defence."""
    if "attack" not in cell or cell["attack"] == "none":
        return None
    twin = {**cell, "attack": "none"}
    clean = next((p for p, c in cells.items() if c == twin), None)
    mine, base = _keep(path), _keep(clean) if clean is not None else None
    return None if mine is None or base is None else float((mine != base).mean())


def main(out: Path) -> None:
    cells = {p: _cell(p) for p in sorted((out / "cells").iterdir()) if _rows(p)}
    fedavg_bytes = {(c.get("model"), c["run.seed"]): _rows(p)[-1]["bytes_up"] for p, c in cells.items()
                    if c.get("method") == "fedavg"}
    groups: dict[tuple, list[tuple[dict, list[dict]]]] = defaultdict(list)
    for path, cell in cells.items():
        key = tuple((k, v) for k, v in cell.items() if k != "run.seed")
        groups[key].append((cell, _rows(path), _moved(path, cell, cells)))
    print("| " + " | ".join([*(k for k, _ in next(iter(groups))), "seeds", "final acc", "last-5 acc", "ASR",
                            "pruned", "mask moved", "client FLOPs", "uplink vs FedAvg"]) + " |")
    print("|" + "---|" * (len(next(iter(groups))) + 8))
    for key, runs in groups.items():
        final = [rows[-1]["accuracy"] for _, rows, _ in runs]
        last5 = [statistics.fmean(r["accuracy"] for r in rows[-5:]) for _, rows, _ in runs]
        asr = [rows[-1]["asr"] for _, rows, _ in runs if "asr" in rows[-1]]
        pruned = [rows[-1].get("sparsity", 0.0) for _, rows, _ in runs]
        moved = [m for _, _, m in runs if m is not None]
        flops = [rows[-1]["client_flops"] / rows[-1]["client_flops_full"] for _, rows, _ in runs
                 if "client_flops" in rows[-1]]
        uplink = [rows[-1]["bytes_up"] / fedavg_bytes[(cell.get("model"), cell["run.seed"])] for cell, rows, _ in runs
                  if (cell.get("model"), cell["run.seed"]) in fedavg_bytes]
        print("| " + " | ".join([*(v for _, v in key), str(len(runs)), _fmt(final), _fmt(last5), _fmt(asr),
                                _fmt(pruned, 2), _fmt(moved, 3), _fmt(flops, 2) if flops else "1.00", _fmt(uplink, 2)]) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "cells").is_dir():
        sys.exit("usage: autoflip_tables.py BENCH_DIR (the --out of secfl bench)")
    main(Path(sys.argv[1]))
