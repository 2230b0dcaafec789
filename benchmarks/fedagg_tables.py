"""The FedAgg tables from bench directories: methods (benchmarks/suites/fedagg.toml, the README) or attacks x
defences (attacks/suites/fedagg-*.toml, attacks/README.md).

    .venv/bin/python benchmarks/fedagg_tables.py runs/fedagg
    .venv/bin/python benchmarks/fedagg_tables.py runs/fedagg-attacks     # rows: defence, columns: attack

Per method (mean ± sample standard deviation over the seeds): the cloud's final test accuracy (the global
model: FedAgg's cloud, hierarchical FedAvg's one model), the mean of the device models' and of the edge models'
accuracies (FedAgg), the first round at which the cloud reached 0.90 and 0.80 ("-": never), and per device
per round the bytes up (through the secure sum, as the protocol counted them) and down (FedAgg: the edge's
bridge inputs and logits; FedAvg: the model).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from cells import cell_of, fmt, rows_of


def _first(rows: list[dict], level: float) -> float | None:
    return next((float(r["round"]) for r in rows if r["accuracy"] >= level), None)


def attacks(out: Path) -> None:
    """Final cloud accuracy per defence (rows) and attack (columns), mean over seeds."""
    from secfl.experiments.suite import expand, load_suite

    order = [c.id for c in expand(load_suite(json.loads((out / "suite.json").read_text())["suite"]))]
    paths = sorted((out / "cells").iterdir(), key=lambda p: order.index(p.name) if p.name in order else len(order))
    cells = [(cell_of(p), rows) for p in paths if (rows := rows_of(p))]
    defence_key = "defense" if "defense" in cells[0][0] else "fedagg.rule"
    attacks_seen = list(dict.fromkeys(c["attack"] for c, _ in cells))
    defences = list(dict.fromkeys(c[defence_key] for c, _ in cells))
    print("| defence | " + " | ".join(attacks_seen) + " |")
    print("|---|" + "---|" * len(attacks_seen))
    for defence in defences:
        values = [fmt([rows[-1]["accuracy"] for c, rows in cells if c[defence_key] == defence and c["attack"] == a])
                  for a in attacks_seen]
        print(f"| {defence} | " + " | ".join(values) + " |")


def main(out: Path) -> None:
    if "attack" in cell_of(next((out / "cells").iterdir())):
        return attacks(out)
    runs: dict[str, list[list[dict]]] = defaultdict(list)
    for path in sorted((out / "cells").iterdir()):
        if rows := rows_of(path):
            runs[cell_of(path)["method"]].append(rows)
    print("| method | seeds | cloud accuracy | device models | edge models | round to 0.80 | round to 0.90 "
          "| up / device / round (kB) | down / device / round (kB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for method, seeds in runs.items():
        last = [rows[-1] for rows in seeds]

        def column(key: str, scale: float = 1.0) -> str:
            values = [row[key] / scale for row in last if key in row]
            return fmt(values, 1 if scale > 1 else 3)

        reach = {level: [r for rows in seeds if (r := _first(rows, level)) is not None] for level in (0.8, 0.9)}
        late = {level: len(seeds) - len(reach[level]) for level in reach}
        rounds = {level: fmt(reach[level], 1) + (f" ({late[level]} never)" if late[level] else "")
                  for level in reach}
        print(f"| {method} | {len(seeds)} | {column('accuracy')} | {column('device_accuracy')} | "
              f"{column('edge_accuracy')} | {rounds[0.8]} | {rounds[0.9]} | {column('bytes_up_per_client', 1000)} | "
              f"{column('bytes_down_per_client', 1000)} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))
