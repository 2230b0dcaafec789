"""The files behind the reports (``secfl report``): tidy CSV and matplotlib figures (the Agg canvas, no pyplot
state, no display), each written atomically."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from secfl.runs import atomic_write

__all__ = ["csv_cell", "write_csv", "figure", "heatmap", "curves"]


def csv_cell(value: Any) -> Any:
    """A CSV field: numbers and strings as they are, None as empty."""
    return "" if value is None else value


def write_csv(path: Path, head: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue().encode())


def figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot state, no display needed

    return Figure(figsize=(width, height), layout="constrained")


def heatmap(path: Path, values: np.ndarray, rows: list[str], cols: list[str], texts: list[list[str]], *,
             title: str, cmap: str, separate_last: bool = False) -> None:
    """An annotated heatmap in [0, 1] (NaN cells grey); ``separate_last`` sets the worst-case column apart."""
    import matplotlib

    width = 2.5 + 0.9 * len(cols) + 0.06 * max(map(len, rows))
    fig = figure(min(width, 30), min(1.6 + 0.45 * len(rows), 30))
    ax = fig.subplots()
    colors = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colors, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            r, g, b, _ = colors(values[i, j]) if not math.isnan(values[i, j]) else (1, 1, 1, 1)
            ax.text(j, i, texts[i][j], ha="center", va="center", fontsize=8,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    if separate_last and values.shape[1] > 1:
        ax.axvline(values.shape[1] - 1.5, color="white", linewidth=3)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    fig.savefig(path, dpi=110)


def curves(path: Path, panels: list[tuple[str, list[tuple[str, list[int], list[float]]]]], setting: str) -> None:
    """Accuracy per round: one panel per attack, one line per defense, a shared legend on the right."""
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig = figure(4.2 * columns + 2.5, 3.2 * rows + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False, sharey=True)).ravel()
    for ax, (attack, lines) in zip(axes, panels):
        for defense, rounds, accuracy in lines:
            ax.plot(rounds, accuracy, marker="o" if len(rounds) < 12 else None, markersize=3, label=defense)
        ax.set_title(attack, fontsize=9)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy" if ax.get_subplotspec().is_first_col() else "")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not lines:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(panels)]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    if handles:
        fig.legend(handles, names, loc="outside right upper", fontsize=8, title="defense", title_fontsize=8)
    if setting:
        fig.suptitle(setting, fontsize=10)
    fig.savefig(path, dpi=110)
