"""The malicious-model section of ``audit.md`` and its PNGs (true examples over the server's best reconstructions)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secfl.runs import atomic_write

__all__ = ["save_grid", "malicious_lines"]

_COLUMNS = ("scenario", "attack", "binding", "round", "examples attacked", "recovered", "fraction",
            "median best PSNR", "mean image / black: fraction (PSNR)", "picture")


def _image(example: np.ndarray) -> np.ndarray:
    """One example as a 2-D picture: an image's first channel; flat features as a square, else a strip."""
    if example.ndim == 3:
        return example[0]
    side = math.isqrt(example.size)
    return example.reshape(side, side) if side * side == example.size else example.reshape(1, -1)


def save_grid(outcome: Any, png: Path, title: str, *, limit: int = 10) -> None:
    """The first ``limit`` attacked examples (top row) over their best reconstructions (bottom row, with the
    PSNR), written atomically. ``outcome``: a ``malicious_model.Outcome`` that released something."""
    from matplotlib.figure import Figure  # the Agg canvas: no pyplot state, no display

    truth, matched = np.asarray(outcome.truth), np.asarray(outcome.matched)
    count = min(limit, len(truth))
    if count == 0:
        return
    fig = Figure(figsize=(max(3.6, 1.2 * count + 0.4), 3.2), layout="constrained")
    axes = fig.subplots(2, count, squeeze=False)
    for j in range(count):
        for row, image in ((0, truth[j]), (1, matched[j])):
            ax = axes[row][j]
            ax.imshow(_image(np.asarray(image)), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(f"y={int(outcome.labels[j])}", fontsize=8)
        value = float(outcome.best_psnr[j])
        text = "nothing" if value == -math.inf else ("exact" if value > 60 else f"{value:.1f} dB")
        axes[1][j].set_xlabel(text, fontsize=7)
    axes[0][0].set_ylabel("true", fontsize=8)
    axes[1][0].set_ylabel("recovered", fontsize=8)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(Path(png), buffer.getvalue())


def _cells(name: str, run: dict[str, Any]) -> list[str]:
    binding = ("on" if run["binds"] else "on (not bound: the protocol does not bind)") if run["binding"] else "off"
    if run.get("model_check"):
        binding += f"; model check: {len(run['model_refusals'])} refused the model"
    if run["refused"] is not None:
        released = f"refused: {run['refused']}"
    else:
        excluded = f", {len(run['excluded'])} excluded" if run["excluded"] else ""
        released = f"{run['groups']} sum(s) of <= {run['largest_sum']} clients{excluded}"
    mean_base = f"{run['fraction_mean_image']:.2f} ({run['psnr_mean_image']:.1f} dB)"
    black_base = f"{run['fraction_black']:.2f} ({run['psnr_black']:.1f} dB)"
    median = run.get("median_psnr", float("nan"))
    median_cell = "n/a" if median != median else ("exact" if median >= 100 else f"{median:.1f}")
    picture = f"[png]({name}/{run['png']})" if run.get("png") else ""
    return [name, run["attack"], binding, released, f"{run['examples']:.0f} of {run['examples_in_round']}",
            f"{run['recovered']:.0f}", f"{run['fraction']:.2f}", median_cell, f"{mean_base} / {black_base}", picture]


def malicious_lines(results: Sequence[dict[str, Any]], out: Path) -> list[str]:
    """The section for every result with a ``malicious_model`` entry (none: no lines)."""
    rows = [r for r in results if "malicious_model" in r]
    if not rows:
        return []
    first = next((r["malicious_model"] for r in rows if "runs" in r["malicious_model"]), {})
    threshold = first.get("threshold_db", float("nan"))
    lines = ["## Malicious server through the model", "",
             "One FedSGD round (each client: one gradient step on one batch of its own examples) through the "
             "scenario's own pipeline, with a crafted model. trap_weights (Fowl et al. ICLR 2022): every client gets "
             "an imprint model (a linear layer of bins at brightness quantiles of the server's data); the server "
             "reconstructs examples from each decoded group sum by bin differences. inconsistency (Pasquini et al. "
             "CCS 2022): the target gets the imprint model, every other client a model whose update is zero. "
             "Binding on: each client binds a digest of the model it received into the secure sum (SecAgg/SecAgg+); "
             f"a client on another model than its group's majority is excluded. Recovered: the true example's best "
             f"reconstruction has PSNR >= {threshold:g} dB; the no-information guesses (the public mean image, a "
             "black image) at the same threshold beside it. A refused round releases nothing.", "",
             "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for result in rows:
        entry = result["malicious_model"]
        if "skipped" in entry:
            lines.append(f"| {result['name']} | skipped: {entry['skipped']} |" + " |" * (len(_COLUMNS) - 2))
            continue
        for run in entry["runs"]:
            lines.append("| " + " | ".join(c.replace("|", "/") for c in _cells(result["name"], run)) + " |")
    lines.append("")
    for result in rows:
        for run in result["malicious_model"].get("runs", []):
            if run.get("png") and (Path(out) / result["name"] / run["png"]).exists():
                label = f"{result['name']}: {run['attack']}, binding {'on' if run['binding'] else 'off'}"
                lines += [f"![{label}]({result['name']}/{run['png']})", ""]
    return lines
