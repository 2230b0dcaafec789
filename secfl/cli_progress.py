"""What the CLI shows while long work runs: rich bars with the time left on a terminal, plain lines
otherwise (CI logs, pipes). Each display is a context manager that yields the callbacks the work calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["bench_progress", "audit_progress", "cell_line", "audit_line"]

Callback = Callable[..., None]


def _bar(console: Console, *extra: Any) -> Progress:
    columns = (TextColumn("{task.description}"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn(), *extra)
    return Progress(*columns, console=console, transient=True)


@contextmanager
def bench_progress(console: Console, fancy: bool) -> Iterator[tuple[Callback, Callback | None]]:
    """``(on_cell(result, count, total), on_round(cell, row))`` for ``bench.run_suite``: a bar of cells and
    one bar of rounds per running cell, or one line per cell with the minutes left."""
    if not fancy:
        started, ran = time.monotonic(), []

        def line(result: Any, count: int, total: int) -> None:
            ran.append(result.status in ("done", "failed") and not result.skipped)
            left = (time.monotonic() - started) / max(1, sum(ran)) * (total - count) if any(ran) else None
            eta = f" (about {left / 60:.0f} min left)" if left is not None and count < total else ""
            print(cell_line(result, count, total) + eta, flush=True)

        yield line, None
        return
    with _bar(console, TextColumn("{task.fields[info]}")) as bar:
        task = bar.add_task("cells", total=None, info="validating")
        running: dict[str, Any] = {}  # cell id -> its rounds bar

        def show(result: Any, count: int, total: int) -> None:
            bar.update(task, completed=count, total=total, info="")
            if result.id in running:
                bar.remove_task(running.pop(result.id))
            bar.console.print(cell_line(result, count, total), markup=False, highlight=False)

        def rounds(cell: str, row: dict[str, Any]) -> None:
            if cell not in running:
                running[cell] = bar.add_task(f"  {cell[:48]} round", total=row["of"], info="")
            accuracy = row.get("accuracy")
            bar.update(running[cell], completed=row["round"],
                       info="" if accuracy is None else f"accuracy {accuracy:.4f}")

        yield show, rounds


@contextmanager
def audit_progress(console: Console, fancy: bool) -> Iterator[tuple[Callback, Callback]]:
    """``(progress(name, stage, round, rounds), say(line))`` for ``audit_all``: a bar per run with its time
    left, or one line when each run ends."""
    if not fancy:
        def plain(name: str, stage: str, done: int, total: int) -> None:
            if done == total:
                print(f"{name}: {stage} finished ({total} rounds)", flush=True)

        yield plain, lambda line: print(line, flush=True)
        return
    with _bar(console) as bar:
        tasks: dict[tuple[str, str], Any] = {}

        def show(name: str, stage: str, done: int, total: int) -> None:
            if (name, stage) not in tasks:
                tasks[name, stage] = bar.add_task(f"{name}: {stage} round", total=total)
            bar.update(tasks[name, stage], completed=done)

        yield show, lambda line: bar.console.print(line, markup=False, highlight=False)


def cell_line(result: Any, count: int, total: int) -> str:
    """``[3/8] <id>: final accuracy 0.8123, done (4.1 s)``, ``finished before`` (skipped), FAILED or n/a."""
    if result.status == "failed":
        return f"[{count}/{total}] FAILED {result.id}: {result.error}"
    if result.status == "n/a":
        return f"[{count}/{total}] n/a {result.id}: {result.error}"
    what = "finished before" if result.skipped else f"done ({result.seconds:.1f} s)"
    accuracy = f"final accuracy {result.final_accuracy:.4f}" if result.final_accuracy is not None else "no rounds"
    stopped = f" (stopped: {result.stopped})" if result.stopped else ""
    return f"[{count}/{total}] {result.id}: {accuracy}{stopped}, {what}"


def audit_line(result: dict[str, Any]) -> str:
    """One line per audited scenario: the estimate, the proven bound, the claim, the verdict and the control."""
    a = result["audit"]
    g = a.get("gaussian", {})
    estimate = f"epsilon ~ {g['epsilon']:.3g} [{g['epsilon_low']:.3g}, {g['epsilon_high']:.3g}], " if "epsilon" in g \
        else ""
    bound = f"{estimate}proven >= {a['epsilon_lower_bound']:.3g}" if "epsilon_lower_bound" in a else "no audit"
    claim, server = result["epsilon_claimed"], result.get("epsilon_server")
    against = "" if server is None else f", {server:.3g} against the server"
    stale = a.get("flagged") and not g.get("flagged")  # flagged by the fresh-noise test only
    verdict = ("  FAILED" if a.get("failed") else "  FLAGGED (noise shared across rounds)" if stale
               else "  FLAGGED" if a.get("flagged") else "")
    control = result.get("negative_control") or {}
    if "epsilon_lower_bound" in control:
        verdict += ("; negative control caught" if control.get("flagged") or control.get("failed")
                    else "; negative control NOT caught")
    return f"{result['name']}: {bound} (claimed {'none' if claim is None else f'{claim:.3g}'}{against}){verdict}"
