"""``secfl bench``: run every cell of a suite (``secfl.experiments.suite``) in its own run directory, resumably.

Each cell runs in ``OUT/cells/<id>/``; ``OUT/suite.json`` lists the cells (id, overrides, axis labels,
status, error) and is rewritten after every cell. A cell is finished when its summary is written and
all its rounds are; ``resume`` skips finished cells and resumes the others from their checkpoints, so a
killed grid loses nothing. ``jobs > 1`` runs cells in worker processes (one torch thread each).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from secfl import scenario
from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError, SecflError
from secfl.runs import RunDir, atomic_write
from secfl.experiments.suite import (MAX_ID, SEED_AXIS, Cell, Joint, Suite, cell_id, digest, expand, label, load_suite,
                         parse_suite, roles, validate_cells)

__all__ = ["MAX_ID", "SEED_AXIS", "Cell", "CellResult", "Suite", "cell_finished", "cell_id", "digest", "expand", "label",
           "load_suite", "parse_suite", "roles", "run_cell", "run_suite", "validate_cells"]


@dataclass
class CellResult:
    """What running (or skipping) one cell gave."""

    id: str
    status: str  # "done", "failed" or "n/a" (skip_incompatible: components that cannot work together)
    skipped: bool = False  # finished before this bench started
    seconds: float = 0.0
    rounds: int = 0
    final_accuracy: float | None = None
    error: str | None = None
    stopped: str | None = None  # a privacy budget ended the run early (it counts as finished)


# ---------------------------------------------------------------- suite file


def cell_finished(run_dir: RunDir, rounds: int) -> dict[str, Any] | None:
    """The summary of a finished run (all rounds written, or stopped by its privacy budget), else None."""
    try:
        summary = json.loads(run_dir.summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if "stopped" in summary or len(run_dir.metrics()) >= rounds:
        return summary
    return None


# ---------------------------------------------------------------- running


def run_suite(
    suite: Suite,
    out: str | Path,
    *,
    jobs: int = 1,
    resume: bool = False,
    on_cell: Callable[[CellResult, int, int], None] | None = None,
    on_round: Callable[[str, dict[str, Any]], None] | None = None,
) -> list[CellResult]:
    """Validate every cell, then run the unfinished ones (``jobs`` processes); return one result per cell.

    ``on_cell(result, finished, total)`` is called as each cell ends (skipped cells first); ``on_round(id,
    row)`` after each round of a running cell, ``row`` being its ``metrics.jsonl`` line plus ``"of"``: the
    cell's round count (with ``jobs > 1`` the workers' files are read about once a second). A failing cell
    is recorded (``OUT/suite.json``) and the others go on.

    Raises:
        ConfigurationError: a bad cell (nothing has run), or ``out`` holds something and ``resume`` is off.
    """
    if jobs < 1:
        raise ConfigurationError(f"--jobs = {jobs}: needs at least 1 worker")
    cells = expand(suite)
    specs, not_applicable = validate_cells(cells, source=str(suite.path or suite.name),
                                           skip_incompatible=suite.skip_incompatible)
    out = Path(out)
    _check_out(out, suite, resume)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    state = _SuiteFile(out, suite, cells, {c.id: specs[c.id].run.rounds if c.id in specs else 0 for c in cells})

    results: dict[str, CellResult] = {}
    todo = []
    for cell in cells:
        if cell.id in not_applicable:
            results[cell.id] = CellResult(cell.id, "n/a", error=not_applicable[cell.id])
            state.record(results[cell.id])
            continue
        summary = cell_finished(RunDir(out / "cells" / cell.id), state.rounds[cell.id]) if resume else None
        if summary is not None:
            results[cell.id] = CellResult(cell.id, "done", skipped=True, seconds=summary.get("seconds_total", 0.0),
                                          rounds=summary.get("rounds", 0), final_accuracy=summary.get("final_accuracy"),
                                          stopped=summary.get("stopped"))
            state.record(results[cell.id])
        else:
            todo.append(cell)
    state.write()
    total = len(cells)
    for count, result in enumerate(list(results.values()), start=1):
        if on_cell is not None:
            on_cell(result, count, total)

    def finish(result: CellResult) -> None:
        results[result.id] = result
        state.record(result)
        state.write()
        if on_cell is not None:
            on_cell(result, len(results), total)

    tasks = [{"id": c.id, "data": c.data, "path": str(out / "cells" / c.id),
              "resume": (out / "cells" / c.id / "config.toml").exists()} for c in todo]
    report = None if on_round is None else (lambda cell, row: on_round(cell, {**row, "of": state.rounds[cell]}))
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            finish(run_cell(task, on_round=(lambda row, i=task["id"]: report(i, row)) if report else None))
    else:
        _run_pool(tasks, jobs, finish, report)
    return [results[c.id] for c in cells]


def _last_round(path: Path, seen: dict[str, int], cell: str) -> dict[str, Any] | None:
    """The last line of a running cell's ``metrics.jsonl`` if the file grew since the last look."""
    try:
        size = path.stat().st_size
        if size == seen.get(cell):
            return None
        seen[cell] = size
        lines = path.read_bytes().splitlines()
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):  # not written yet, or a line being written: look again next time
        return None


def _run_pool(tasks: list[dict[str, Any]], jobs: int, finish: Callable[[CellResult], None],
              on_round: Callable[[str, dict[str, Any]], None] | None = None) -> None:
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    paths = {task["id"]: Path(task["path"]) / "metrics.jsonl" for task in tasks}
    sizes: dict[str, int] = {}
    try:
        pending: dict[Future, str] = {pool.submit(run_cell, task): task["id"] for task in tasks}
        while pending:
            finished, _ = wait(pending, timeout=1.0 if on_round else None, return_when=FIRST_COMPLETED)
            for future, cell in pending.items() if on_round else ():
                row = None if future in finished or not future.running() else _last_round(paths[cell], sizes, cell)
                if row is not None and "round" in row:
                    on_round(cell, row)
            for future in finished:
                cell = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker process died (e.g. out of memory): the cell failed
                    result = CellResult(cell, "failed", error=f"worker process failed: {type(exc).__name__}: {exc}")
                finish(result)
    except BaseException:  # Ctrl-C, SIGTERM (the CLI raises KeyboardInterrupt), an error in `finish`
        processes = list((pool._processes or {}).values())  # noqa: SLF001 (no public handle on the workers)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # a worker mid-cell would run on until its cell ends; its rounds are saved
            process.terminate()
        raise
    pool.shutdown()


def _init_worker(parent: int) -> None:
    """One torch thread per worker (N workers share the machine's cores), and no orphans: a worker
    whose bench process is killed exits within a second instead of writing on in a run directory
    that a resumed bench will also write."""
    import torch

    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def run_cell(task: dict[str, Any], on_round: Callable[[dict[str, Any]], None] | None = None) -> CellResult:
    """Run (or resume) one cell; any error becomes a failed result (never raised, but interrupts are)."""
    start, run_dir = time.perf_counter(), RunDir(task["path"])
    try:
        from secfl import engine as server  # the engine: imported in the worker

        spec = scenario.validate(task["data"], source=f"cell {task['id']}")
        summary = server.run(spec, run_dir, resume=task["resume"], on_round=on_round)
    except PrivacyBudgetExceededError as exc:  # the summary was written: the run ended where its budget did
        summary = json.loads(run_dir.summary_path.read_text(encoding="utf-8"))
        summary.setdefault("stopped", str(exc))
    except Exception as exc:
        error = str(exc) if isinstance(exc, SecflError) else f"{type(exc).__name__}: {exc}"
        return CellResult(task["id"], "failed", seconds=time.perf_counter() - start,
                          rounds=len(run_dir.metrics()), error=error)
    return CellResult(task["id"], "done", seconds=time.perf_counter() - start, rounds=summary["rounds"],
                      final_accuracy=summary["final_accuracy"], stopped=summary.get("stopped"))


def _check_out(out: Path, suite: Suite, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file; give a directory")
    if not out.exists() or not any(out.iterdir()):
        return
    if not resume:
        raise ConfigurationError(f"{out} is not empty; pass --resume to continue the suite there (finished cells "
                                 "are skipped) or choose another --out")
    try:
        stored = json.loads((out / "suite.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise ConfigurationError(f"{out} holds no suite.json: not a bench directory; choose another --out") from None
    if stored.get("name") != suite.name:
        raise ConfigurationError(f"{out} holds suite {stored.get('name')!r}, not {suite.name!r}; "
                                 "choose another --out")


class _SuiteFile:
    """``OUT/suite.json``: the cells and their status, rewritten atomically as cells end."""

    def __init__(self, out: Path, suite: Suite, cells: list[Cell], rounds: dict[str, int]) -> None:
        self.path, self.rounds = out / "suite.json", rounds
        self.data = {
            "format": 1, "name": suite.name, "suite": str(suite.path) if suite.path else None, "out": str(out),
            "axes": suite.axes, "seed_axis": SEED_AXIS if SEED_AXIS in suite.axes else None, "labels": roles(suite),
            "cells": {c.id: {"id": c.id, "overrides": {k: {"name": v.name, "set": v.values} if isinstance(v, Joint)
                                                       else v for k, v in c.overrides.items()},
                             "values": c.values, "rounds": rounds[c.id],
                             "status": "pending", "error": None} for c in cells},
        }

    def record(self, result: CellResult) -> None:
        entry = self.data["cells"][result.id]
        entry.update(status=result.status, error=result.error, final_accuracy=result.final_accuracy,
                     seconds=round(result.seconds, 3))
        if result.stopped:
            entry["stopped"] = result.stopped

    def write(self) -> None:
        data = {**self.data, "cells": list(self.data["cells"].values())}
        atomic_write(self.path, json.dumps(data, indent=2, default=str).encode())
