"""Tables and plots from a bench directory: ``report.md`` plus heatmaps and accuracy curves (matplotlib Agg).

``write_report(DIR)`` reads ``DIR/suite.json`` (written by ``secfl bench``) and each cell's run directory.
Accuracy is the final round's test accuracy, averaged over seeds (the ``run.seed`` axis) with its
standard deviation. Cells are placed on a defense x attack table (the suite's ``[labels]``, or inferred);
any other axis is a setting, with one table and heatmap per setting. The worst case of a defense is the
minimum over attacks of its mean final accuracy, as ByzFL reports it. Unfinished cells are marked
missing; a worst case over the finished attacks only carries a ``*``. When rounds log ``asr`` (backdoor
attack success rate), the same tables are drawn for the final ASR.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from secfl.experiments.bench import cell_finished
from secfl.experiments.figures import csv_cell, curves, heatmap, write_csv
from secfl.experiments.suite import digest
from secfl.exceptions import ConfigurationError
from secfl.runs import RunDir, atomic_write

MISSING = "missing"
FIGURES = ("heatmap", "curves", "asr", "worst_case")  # the report's PNGs: <stem>.png or <stem>-<setting>.png
NA = "n/a"


@dataclass
class _Cell:
    id: str
    values: dict[str, str]
    state: str  # "done", "failed: ...", "n/a: ...", "partial (r/R rounds)" or "missing"
    rows: list[dict[str, Any]]
    accuracy: float | None  # final accuracy, finished cells only
    asr: float | None  # final ASR, finished cells that log it

    @property
    def na(self) -> bool:
        """Not applicable: its components cannot work together (the suite's skip_incompatible)."""
        return self.state.startswith(NA)


@dataclass
class _Stat:
    mean: float | None
    std: float
    done: int
    total: int

    def text(self, seeds: bool) -> str:
        if self.mean is None:
            return MISSING
        spread = f" ± {self.std:.4f}" if self.done > 1 else ""
        partial = f" ({self.done}/{self.total})" if not seeds and self.done < self.total else ""
        return f"{self.mean:.4f}{spread}{partial}"


def write_report(directory: str | Path) -> Path:
    """Write ``DIR/report.md`` and its PNGs; return the path of report.md.

    Raises:
        ConfigurationError: ``DIR`` holds no readable ``suite.json``.
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / "suite.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ConfigurationError(f"{directory} holds no readable suite.json; run `secfl bench SUITE.toml --out "
                                 f"{directory}` first") from None
    cells = [_load_cell(directory, entry) for entry in meta["cells"]]
    return _Report(directory, meta, cells).write()


def _load_cell(directory: Path, entry: dict[str, Any]) -> _Cell:
    run_dir = RunDir(directory / "cells" / entry["id"])
    rows, summary = run_dir.metrics(), cell_finished(run_dir, entry["rounds"])
    if entry.get("status") == NA:
        state = f"{NA}: {entry.get('error')}"
    elif summary is not None:
        state = "done"
    elif entry.get("status") == "failed":
        state = f"failed: {entry.get('error')}"
    elif rows:
        state = f"partial ({len(rows)}/{entry['rounds']} rounds)"
    else:
        state = MISSING
    finished = summary is not None and bool(rows)
    asr = rows[-1].get("asr") if finished else None
    return _Cell(entry["id"], entry["values"], state, rows, rows[-1]["accuracy"] if finished else None,
                 float(asr) if isinstance(asr, (int, float)) else None)


@dataclass
class _Worst:
    value: float | None  # the worst case over the attacks with a value
    partial: bool  # some attacks are missing: the true worst case may be lower
    state: str  # what a None says: "missing" or "n/a"


def _texts(values: np.ndarray, states: Sequence[str], stars: Sequence[bool], digits: int,
           spreads: Sequence[float] | None = None, joiner: str = " ") -> list[str]:
    """Cell texts: the value (``*``: a partial worst case), `` ± std`` over seeds when ``spreads`` has one."""
    spreads = [math.nan] * len(values) if spreads is None else spreads
    return [state if math.isnan(v) else f"{v:.{digits}f}" + ("" if math.isnan(sd) else f"{joiner}± {sd:.{digits}f}")
            + ("*" if star else "") for v, state, star, sd in zip(values, states, stars, spreads, strict=True)]


def _stat(cells: Sequence[_Cell], metric: str) -> _Stat:
    values = [getattr(c, metric) for c in cells if getattr(c, metric) is not None]
    if not values:
        return _Stat(None, 0.0, 0, len(cells))
    return _Stat(float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values),
                 len(cells))


def _name(cell: _Cell, axes: Sequence[str], empty: str) -> str:
    return " / ".join(cell.values[a] for a in axes) or empty


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _axis(name: str) -> str:
    """An axis as the report shows it: a suite variable ``$f`` is ``f``."""
    return name.removeprefix("$")


def _md(text: str) -> str:
    return text.replace("|", "\\|")


class _Report:
    def __init__(self, directory: Path, meta: dict[str, Any], cells: list[_Cell]) -> None:
        self.dir, self.meta, self.cells = directory, meta, cells
        labels, axes = meta["labels"], meta["axes"]
        self.seed = meta.get("seed_axis")
        self.defense, self.attack = labels["defense"], labels["attack"]
        self.setting = [a for a in axes if a not in (*self.defense, *self.attack, self.seed)]
        self.axes = [a for a in axes if a != self.seed]
        self.has_asr = any(c.asr is not None for c in cells)
        self.lines: list[str] = []

    def defense_of(self, c: _Cell) -> str:
        return _name(c, self.defense, "all")

    def attack_of(self, c: _Cell) -> str:
        return _name(c, self.attack, "(no attack axis)")

    def setting_of(self, c: _Cell) -> str:
        return ", ".join(f"{_axis(a)}={c.values[a]}" for a in self.setting)

    def select(self, **want: str) -> list[_Cell]:
        keys = {"defense": self.defense_of, "attack": self.attack_of, "setting": self.setting_of}
        return [c for c in self.cells if all(keys[k](c) == v for k, v in want.items())]

    # ------------------------------------------------------------ document

    def write(self) -> Path:
        meta, out = self.meta, self.meta.get("out") or str(self.dir)
        for stem in FIGURES:  # figures of an earlier report (its settings may differ): never left stale
            for old in self.dir.glob(f"{stem}*.png"):
                old.unlink()
        done = sum(c.state == "done" for c in self.cells)
        failed = sum(c.state.startswith("failed") for c in self.cells)
        na = sum(c.na for c in self.cells)
        self.lines += [
            f"# Benchmark report: {meta['name']}", "",
            f"{len(self.cells)} cells: {done} done, {failed} failed, {len(self.cells) - done - failed - na} "
            f"missing or unfinished" + (f", {na} not applicable." if na else "."), "",
            "Reproduce (from the directory the suite was run in):", "", "```",
            f"secfl bench {meta.get('suite') or 'SUITE.toml'} --out {out}", f"secfl report {out}", "```", "",
            f"Defense axes: {', '.join(self.defense) or '-'}; attack axes: {', '.join(self.attack) or '-'}; "
            f"settings: {', '.join(map(_axis, self.setting)) or '-'}; seeds: {self.seed or '-'}. Accuracy is the "
            "final round's "
            "test accuracy" + (", mean ± standard deviation over seeds." if self.seed else "."), "",
        ]
        rounds = sorted({int(e.get("rounds", 0)) for e in meta["cells"] if e.get("rounds")})
        self.lines += [f"Rounds per cell: {', '.join(map(str, rounds)) or '-'}. Tidy data: `cells.csv` (one row per "
                       "cell: its axis values, state and final metrics) and `rounds.csv` (one row per cell and "
                       "round: every logged metric).", ""]
        self.writewrite_csv()
        self.per_cell_table()
        settings = _unique([self.setting_of(c) for c in self.cells])
        worst: dict[str, dict[str, _Worst]] = {}
        self.lines += ["## Worst case per defense over attacks", "",
                       "Mean final accuracy per defense (rows) and attack (columns); the worst case is the minimum "
                       "over attacks (* = some attacks are missing, so it is an upper bound).", ""]
        for setting in settings:
            worst[setting] = self.matrix(setting, "accuracy", "heatmap", "final accuracy", "viridis")
        if len(settings) > 1:
            self.worst_case_table(settings, worst)
        self.curves(settings)
        if self.has_asr:
            self.lines += ["## Backdoor attack success rate", "",
                           "Final ASR per defense and attack (lower is better; the worst case is the maximum).", ""]
            for setting in settings:
                self.matrix(setting, "asr", "asr", "final ASR", "magma_r")
        self.missing_list()
        path = self.dir / "report.md"
        atomic_write(path, ("\n".join(self.lines).rstrip() + "\n").encode())
        return path

    def writewrite_csv(self) -> None:
        """``cells.csv`` and ``rounds.csv`` beside report.md (for pandas, R or a spreadsheet)."""
        axes = list(self.meta["axes"])
        cells = [[c.id, *[c.values.get(a, "") for a in axes], c.state, csv_cell(c.accuracy), csv_cell(c.asr),
                  len(c.rows)] for c in self.cells]
        write_csv(self.dir / "cells.csv", ["cell", *map(_axis, axes), "state", "final_accuracy", "final_asr",
                                           "rounds"], cells)
        keys = _unique([k for c in self.cells for row in c.rows for k, v in row.items()
                        if isinstance(v, (int, float, str, bool)) or v is None])
        rows = [[c.id, *[c.values.get(a, "") for a in axes], *[csv_cell(row.get(k)) for k in keys]]
                for c in self.cells for row in c.rows]
        write_csv(self.dir / "rounds.csv", ["cell", *map(_axis, axes), *keys], rows)

    def per_cell_table(self) -> None:
        seeds = self.seed is not None
        head = [*self.axes, "final accuracy"] + (["seeds done"] if seeds else []) + (["final ASR"] if self.has_asr
                                                                                      else [])
        self.lines += ["## Final accuracy per cell", "", "| " + " | ".join(_md(_axis(h)) for h in head) + " |",
                       "|" + "---|" * len(head)]
        groups: dict[tuple[str, ...], list[_Cell]] = {}
        for c in self.cells:
            groups.setdefault(tuple(c.values[a] for a in self.axes), []).append(c)
        for key, members in groups.items():
            live = [c for c in members if not c.na]
            acc = _stat(live, "accuracy")
            if not live:
                row = [*key, NA] + (["-"] if seeds else []) + (["-"] if self.has_asr else [])
            else:
                row = [*key, acc.text(seeds)] + ([f"{acc.done}/{acc.total}"] if seeds else [])
                if self.has_asr:
                    row.append(_stat(live, "asr").text(seeds).replace(MISSING, "-"))
            self.lines.append("| " + " | ".join(map(_md, row)) + " |")
        self.lines.append("")

    def matrix(self, setting: str, metric: str, stem: str, title: str, cmap: str) -> dict[str, _Worst]:
        """Table + heatmap (defense x attack, plus the worst case) of one setting; return the worst cases."""
        cells = self.select(setting=setting)
        defenses, attacks = _unique([self.defense_of(c) for c in cells]), _unique([self.attack_of(c) for c in cells])
        accuracy = metric == "accuracy"  # ASR: higher is worse, and a cell without ASR is not missing
        if not accuracy:  # only the attacks whose rounds log an ASR (backdoors)
            attacks = [a for a in attacks if any(c.asr is not None for c in cells if self.attack_of(c) == a)]
            if not attacks:
                return {}
        empty = MISSING if accuracy else "-"
        values = np.full((len(defenses), len(attacks) + 1), np.nan)
        spreads = np.full_like(values, np.nan)  # the standard deviation over seeds (NaN: one seed)
        states = [[empty] * (len(attacks) + 1) for _ in defenses]  # what a NaN says: missing, n/a (or "-")
        worst: dict[str, _Worst] = {}
        for i, d in enumerate(defenses):
            for j, a in enumerate(attacks):
                group = [c for c in cells if self.defense_of(c) == d and self.attack_of(c) == a]
                live = [c for c in group if not c.na]
                stat = _stat(live, metric)
                values[i, j] = np.nan if stat.mean is None else stat.mean
                spreads[i, j] = stat.std if stat.done > 1 else np.nan
                states[i][j] = empty if live else NA if group else "-"  # "-": the suite has no such cell
            known = values[i, :-1][~np.isnan(values[i, :-1])]
            missing = accuracy and any(states[i][j] == MISSING and np.isnan(values[i, j]) for j in range(len(attacks)))
            values[i, -1] = (min(known) if accuracy else max(known)) if known.size else np.nan
            if known.size:  # the worst case's spread is that of the attack that gave it
                row = np.where(np.isnan(values[i, :-1]), np.inf if accuracy else -np.inf, values[i, :-1])
                spreads[i, -1] = spreads[i, int(np.argmin(row) if accuracy else np.argmax(row))]
            states[i][-1] = NA if all(x == NA for x in states[i][:-1]) else empty
            worst[d] = _Worst(None if not known.size else float(values[i, -1]), missing and known.size > 0,
                              states[i][-1])
        corner = "worst case" if accuracy else "worst (max)"
        where = f" — {setting}" if setting else ""
        self.lines += ([f"### {setting}", ""] if setting else []) + [
            "| defense \\ attack | " + " | ".join(map(_md, attacks)) + f" | {corner} |",
            "|" + "---|" * (len(attacks) + 2)]
        stars = np.zeros_like(values, dtype=bool)
        stars[:, -1] = [worst[d].partial for d in defenses]
        for i, d in enumerate(defenses):
            self.lines.append("| " + " | ".join(map(_md, [d, *_texts(values[i], states[i], stars[i], 4,
                                                                        spreads[i])])) + " |")
        name = self.figure_name(stem, setting)
        heatmap(self.dir / name, values, defenses, [*attacks, corner],
                 [_texts(values[i], states[i], stars[i], 2, spreads[i], "\n") for i in range(len(defenses))],
                 title=title + where, cmap=cmap, separate_last=True)
        self.lines += ["", f"![{title}{where}]({name})", ""]
        return worst

    def worst_case_table(self, settings: list[str], worst: dict[str, dict[str, _Worst]]) -> None:
        defenses = _unique([d for s in settings for d in worst[s]])
        self.lines += ["## Worst case across settings", "", "| defense | " + " | ".join(map(_md, settings)) + " |",
                       "|" + "---|" * (len(settings) + 1)]
        values = np.full((len(defenses), len(settings)), np.nan)
        stars = np.zeros_like(values, dtype=bool)
        states = [[NA] * len(settings) for _ in defenses]
        for i, d in enumerate(defenses):
            for j, s in enumerate(settings):
                entry = worst[s].get(d, _Worst(None, False, NA))
                values[i, j] = np.nan if entry.value is None else entry.value
                stars[i, j], states[i][j] = entry.partial, entry.state
            self.lines.append("| " + " | ".join(map(_md, [d, *_texts(values[i], states[i], stars[i], 4)])) + " |")
        heatmap(self.dir / "worst_case.png", values, defenses, settings,
                 [_texts(values[i], states[i], stars[i], 2) for i in range(len(defenses))],
                 title="worst-case final accuracy over attacks", cmap="viridis")
        self.lines += ["", "![worst case across settings](worst_case.png)", ""]

    def curves(self, settings: list[str]) -> None:
        over = ", mean over seeds" if self.seed else ""
        self.lines += ["## Accuracy curves", "",
                       f"Test accuracy per round{over}; one panel per attack, one line per defense.", ""]
        for setting in settings:
            cells = self.select(setting=setting)
            attacks = _unique([self.attack_of(c) for c in cells])
            name = self.figure_name("curves", setting)
            curves(self.dir / name, [(a, self._lines_of([c for c in cells if self.attack_of(c) == a]))
                                      for a in attacks], setting)
            self.lines += [f"![accuracy curves{' ' + setting if setting else ''}]({name})", ""]

    def _lines_of(self, cells: list[_Cell]) -> list[tuple[str, list[int], list[float]]]:
        lines = []
        for d in _unique([self.defense_of(c) for c in cells]):
            per_round: dict[int, list[float]] = {}
            for c in cells:
                if self.defense_of(c) == d:
                    for row in c.rows:
                        per_round.setdefault(row["round"], []).append(row["accuracy"])
            if per_round:
                rounds = sorted(per_round)
                lines.append((d, rounds, [float(np.mean(per_round[r])) for r in rounds]))
        return lines

    def missing_list(self) -> None:
        missing = [c for c in self.cells if c.state != "done" and not c.na]
        if missing:
            self.lines += ["## Missing and failed cells", "",
                           f"Continue with `secfl bench {self.meta.get('suite') or 'SUITE.toml'} --out "
                           f"{self.meta.get('out') or self.dir} --resume`.", ""]
            self.lines += [f"- `{c.id}`: {c.state}" for c in missing] + [""]
        na = [c for c in self.cells if c.na]
        if na:
            self.lines += ["## Not applicable cells", "",
                           "Their components cannot work together (the suite sets skip_incompatible).", ""]
            self.lines += [f"- `{c.id}`: {c.state.removeprefix(NA + ': ')}" for c in na] + [""]

    @staticmethod
    def figure_name(stem: str, setting: str) -> str:
        """``heatmap.png``, or ``heatmap-<setting>.png`` (filesystem-safe) when the suite has settings."""
        if not setting:
            return f"{stem}.png"
        slug = re.sub(r"[^A-Za-z0-9._+=,-]+", "_", setting.replace(", ", ","))
        return f"{stem}-{slug if len(slug) <= 80 else slug[:71] + '~' + digest(setting)}.png"
