"""``secfl report RUN_DIR`` for one run (``secfl run``'s directory): ``report.md``, ``curves.png``, ``rounds.csv``.

The header says what ran (scenario name, rounds done of planned, seed, secfl version and git sha from
``env.json``), then the final and best accuracy, the privacy claim if the run is private, the bytes per
client and the time; one row per round follows. Everything is read from the run's files (a run still going
or killed mid-way is reported as far as it got); nothing is recomputed.
"""

from __future__ import annotations

import io
import json
import tomllib
from pathlib import Path
from typing import Any

from secfl.exceptions import ConfigurationError
from secfl.experiments.figures import csv_cell, figure, write_csv
from secfl.runs import RunDir, atomic_write

__all__ = ["is_run_dir", "write_run_report"]

COLUMNS = ("round", "accuracy", "loss", "train_loss", "epsilon", "epsilon_server", "bytes_up_per_client",
           "clients", "seconds")


def is_run_dir(directory: str | Path) -> bool:
    """A directory ``secfl run`` wrote (config.toml and metrics.jsonl), as opposed to a bench directory."""
    directory = Path(directory)
    return (directory / "config.toml").is_file() and (directory / "metrics.jsonl").is_file()


def write_run_report(directory: str | Path) -> Path:
    """Write ``DIR/report.md``, ``DIR/curves.png`` and ``DIR/rounds.csv`` for one run; return report.md's path.

    Raises:
        ConfigurationError: ``DIR`` is not a run directory, or its config is unreadable.
    """
    run = RunDir(directory)
    if not is_run_dir(run.path):
        raise ConfigurationError(f"{run.path} holds no run (config.toml and metrics.jsonl); give a directory "
                                 "`secfl run` or `secfl bench` wrote")
    try:
        config = tomllib.loads(run.config_path.read_text(encoding="utf-8"))
        env = json.loads(run.env_path.read_text(encoding="utf-8")) if run.env_path.exists() else {}
        summary = json.loads(run.summary_path.read_text(encoding="utf-8")) if run.summary_path.exists() else None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{run.path}: unreadable run files ({type(exc).__name__})") from None
    rows = run.metrics()
    planned = config.get("run", {}).get("rounds", "?")
    lines = [f"# Run report: {config.get('name', run.path.name)}", "",
             f"{len(rows)} of {planned} rounds{' (finished)' if summary is not None else ' (unfinished)'}; seed "
             f"{config.get('run', {}).get('seed', '?')}; method {config.get('method', 'fedavg')}; protocol "
             f"{config.get('protocol', {}).get('kind', '?')}; secfl {env.get('packages', {}).get('secfl') or '?'}"
             f"{', git ' + str(env['git_sha'])[:12] if env.get('git_sha') else ''}. Scenario: `config.toml`.", ""]
    if rows:
        best = max(rows, key=lambda r: r["accuracy"])
        last = rows[-1]
        lines += [f"Final accuracy {last['accuracy']:.4f} (round {last['round']}); best {best['accuracy']:.4f} "
                  f"(round {best['round']}).", ""]
        if "epsilon" in last:
            server = f", {last['epsilon_server']:.4g} against the aggregation server" if "epsilon_server" in last \
                else ""
            lines += [f"Privacy: epsilon {last['epsilon']:.4g} against the released models{server}, at delta "
                      f"{config.get('privacy', {}).get('delta', '?')} (accountant: "
                      f"{config.get('privacy', {}).get('accountant', '?')}).", ""]
        if summary is not None and summary.get("stopped"):
            lines += [f"Stopped early: {summary['stopped']}.", ""]
        shown = [c for c in COLUMNS if any(c in r for r in rows)]
        lines += ["![accuracy and loss per round](curves.png)", "", "| " + " | ".join(shown) + " |",
                  "|" + "---|" * len(shown)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in shown) + " |" for r in rows]
        _curves(run.path / "curves.png", rows)
        keys = list(dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (int, float, str, bool))))
        write_csv(run.path / "rounds.csv", keys, [[csv_cell(r.get(k)) for k in keys] for r in rows])
        lines += ["", "Every logged metric per round: `rounds.csv` (and `metrics.jsonl`)."]
    else:
        lines += ["No round has finished yet."]
    path = run.path / "report.md"
    atomic_write(path, ("\n".join(lines).rstrip() + "\n").encode())
    return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _curves(path: Path, rows: list[dict[str, Any]]) -> None:
    fig = figure(8, 3.2)
    left, right = fig.subplots(1, 2)
    rounds = [r["round"] for r in rows]
    left.plot(rounds, [r["accuracy"] for r in rows], marker="o", ms=3)
    left.set(xlabel="round", ylabel="test accuracy", title="accuracy")
    right.plot(rounds, [r["loss"] for r in rows], marker="o", ms=3, label="test loss")
    if any(r.get("train_loss") is not None for r in rows):
        right.plot(rounds, [r.get("train_loss") for r in rows], marker="o", ms=3, label="train loss")
    right.set(xlabel="round", ylabel="loss", title="loss")
    right.legend()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    atomic_write(path, out.getvalue())
