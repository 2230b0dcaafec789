"""The epsilon audit's two figures in ``audit.md``: the canaries' ROC against what the claim allows, and the
epsilon after each round (claimed, estimated, proven)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics

from secfl.experiments.figures import figure

__all__ = ["roc_png", "epsilon_png"]


def roc_png(path: Path, curves: list[tuple[str, np.ndarray, np.ndarray]], *, claimed: float | None,
            delta: float) -> None:
    """ROC of each ``(label, scores, included)`` on log axes, beside the best ROC an (epsilon, delta)-DP
    mechanism allows at the claim: TPR <= min(e^eps FPR + delta, 1 - e^-eps (1 - delta - FPR))."""
    fig = figure(4.6, 4.0)
    ax = fig.subplots()
    # an FPR below 1 / (canaries left out) is not measured: the axis starts there
    floor = 1.0 / max(1, max(int(np.sum(~np.asarray(inc, bool))) for _, _, inc in curves))
    grid = np.logspace(math.log10(floor), 0, 200)
    for label, scores, included in curves:
        fpr, tpr, _ = metrics.roc_curve(np.asarray(included, bool), np.asarray(scores, float))
        auc = metrics.auc(fpr, tpr)
        ax.step(np.maximum(fpr, floor), np.maximum(tpr, floor), where="post", label=f"{label} (AUC {auc:.2f})")
    if claimed is not None and math.isfinite(claimed):
        bound = np.minimum(np.minimum(math.exp(claimed) * grid + delta, 1 - math.exp(-claimed) * (1 - delta - grid)),
                           1.0)
        ax.plot(grid, bound, "k--", linewidth=1, label=f"most a claim of epsilon {claimed:.3g} allows")
    ax.plot(grid, grid, color="grey", linewidth=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(floor, 1), ylim=(floor, 1.05), xlabel="false positive rate",
           ylabel="true positive rate", title="canaries in vs out (score: per-round likelihood ratio)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)


def epsilon_png(path: Path, curve: list[dict[str, Any]], *, control: list[dict[str, Any]] | None = None) -> None:
    """Epsilon after round t: the accountant's claim, the Gaussian estimate with its limits and the one-run
    lower bound on the first t rounds (and the negative control's estimate when given)."""
    fig = figure(5.2, 3.6)
    ax = fig.subplots()
    rounds = [row["round"] for row in curve]
    if curve and "claimed" in curve[0]:
        ax.plot(rounds, [r["claimed"] for r in curve], "k-", label="claimed (accountant)")
        ax.plot(rounds, [r["estimate"] for r in curve], "C0-", marker="o", markersize=3, label="estimated (Gaussian)")
        ax.fill_between(rounds, [r["estimate_low"] for r in curve], [r["estimate_high"] for r in curve], color="C0",
                        alpha=0.2, linewidth=0, label="estimate's limits")
    ax.plot(rounds, [r["lower_bound"] for r in curve], "C2-", marker="s", markersize=3,
            label="proven lower bound (one run)")
    if control and "estimate" in control[0]:
        ax.plot([r["round"] for r in control], [r["estimate"] for r in control], "C3--", marker="o", markersize=3,
                label="negative control, estimated")
    ax.set(xlabel="round", ylabel="epsilon (released models)", title="epsilon after each round")
    ax.title.set_fontsize(9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)
