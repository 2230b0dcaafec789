"""Reading a ``secfl bench`` output directory for the table scripts beside this file."""

from __future__ import annotations

import json
import statistics
from pathlib import Path


def cell_of(path: Path) -> dict[str, str]:
    """``"model=mlp,run.seed=0,method=fedavg"`` -> {"model": "mlp", ...}."""
    return dict(part.split("=", 1) for part in path.name.split(","))


def rows_of(path: Path) -> list[dict]:
    """The cell's metrics rows (empty if it has not run)."""
    metrics = path / "metrics.jsonl"
    return [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []


def fmt(values: list[float], digits: int = 3) -> str:
    """The mean, ± the sample standard deviation when there are several values; "-" for none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""
    return f"{mean:.{digits}f}{spread}"
