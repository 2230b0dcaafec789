"""EWWA-FL's claim, from a bench of benchmarks/suites/ewwa.toml:

    .venv/bin/python benchmarks/ewwa_tables.py runs/ewwa

Per partition (rows) and aggregation (columns): the final test accuracy (mean ± sample std over the seeds)
and the first round at which the accuracy reached LEVEL (mean over the seeds that reached it; "-": none did),
the "faster convergence" the paper claims.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from cells import cell_of, fmt, rows_of

LEVEL = 0.85
ORDER = ["iid", "dirichlet-0.5", "dirichlet-0.1", "fedavg", "fedadam", "ewwa-paper", "ewwa-code", "ewwa-secure"]


def _ordered(names: list[str]) -> list[str]:
    return sorted(dict.fromkeys(names), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def main(out: Path) -> None:
    final: dict[tuple[str, str], list[float]] = defaultdict(list)
    first: dict[tuple[str, str], list[float]] = defaultdict(list)
    for path in sorted((out / "cells").iterdir()):
        rows = rows_of(path)
        if not rows:
            continue
        cell = cell_of(path)
        key = (cell["data.partition"], cell["aggregation"])
        final[key].append(rows[-1]["accuracy"])
        reached = next((r["round"] for r in rows if r["accuracy"] >= LEVEL), None)
        if reached is not None:
            first[key].append(float(reached))
    partitions, methods = _ordered([p for p, _ in final]), _ordered([m for _, m in final])
    print("final accuracy | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for p in partitions:
        print(f"| {p} | " + " | ".join(fmt(final[(p, m)]) for m in methods) + " |")
    print(f"\nfirst round at accuracy >= {LEVEL} | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for p in partitions:
        cells = [f"{statistics.fmean(first[(p, m)]):.1f} ({len(first[(p, m)])}/{len(final[(p, m)])})"
                 if first[(p, m)] else "-" for m in methods]
        print(f"| {p} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ewwa"))
