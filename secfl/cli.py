"""The ``secfl`` command line: run a scenario or the demo, bench a suite, report on it, list the components.

A user mistake (bad scenario, bad option) exits with code 2 and one line on stderr, no traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from secfl import registry, scenario
from secfl.cli_progress import audit_line, audit_progress, bench_progress
from secfl.exceptions import SecflError
from secfl.runs import RunDir

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Secure, private, robust federated learning.")
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from secfl import __version__

        print(f"secfl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print secfl's version and exit")] = False) -> None:
    """Secure, private, robust federated learning."""
    signal.signal(signal.SIGTERM, _terminate)  # `kill`, a scheduler's stop: the same clean stop as Ctrl-C


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt

Out = Annotated[Path | None, typer.Option("--out", help="run directory (default: runs/<scenario name>)")]
Seed = Annotated[int | None, typer.Option("--seed", help="override run.seed")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="override a key: --set client.lr=0.1 (repeatable)")]
Resume = Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last finished round")]


def fancy() -> bool:
    """Progress bars only on a terminal and outside CI."""
    return sys.stderr.isatty() and os.environ.get("CI", "").lower() not in ("true", "1")


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


def _execute(path: Path, out: Path | None, seed: int | None, sets: list[str] | None, resume: bool,
             engine: str = "embedded") -> None:
    from secfl.engine import run  # torch import deferred: `secfl list` and errors stay fast

    overrides = list(sets or []) + ([f"run.seed={seed}"] if seed is not None else [])
    try:
        if engine == "flower":  # Flower's simulation engine (Ray): secfl's apps, the same run directory
            from secfl.integrations.flower import simulate

            def run(spec, run_dir, *, resume, on_round):  # type: ignore[no-redef]
                return simulate(spec, run_dir, resume=resume, on_round=on_round)
        spec = scenario.load(path, overrides=overrides)
        run_dir = RunDir(out or Path("runs") / scenario.directory_name(spec.name, "scenario"))
        rounds = spec.run.rounds
        if fancy():
            columns = (TextColumn("round"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[acc]}"),
                       TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
            with Progress(*columns, console=err, transient=True) as bar:
                task = bar.add_task("rounds", total=rounds, acc="")

                def show(row: dict[str, Any]) -> None:
                    bar.update(task, completed=row["round"], acc=f"accuracy {row['accuracy']:.4f}{_privacy(row)}")

                summary = run(spec, run_dir, resume=resume, on_round=show)
        else:
            def show(row: dict[str, Any]) -> None:
                print(f"round {row['round']}/{rounds} accuracy {row['accuracy']:.4f} loss {row['loss']:.4f}"
                      f"{_privacy(row)} ({row['seconds']:.2f} s)", flush=True)

            summary = run(spec, run_dir, resume=resume, on_round=show)
    except SecflError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished rounds are saved; continue with --resume", markup=False)
        raise typer.Exit(code=130) from None
    claim = (f", epsilon {summary['epsilon']:.4g} against the released models, "
             f"{summary['epsilon_server']:.4g} against the aggregation server, at delta {summary['delta']:g}"
             if "epsilon" in summary and "epsilon_server" in summary else
             f", epsilon {summary['epsilon']:.4g} at delta {summary['delta']:g}" if "epsilon" in summary else "")
    print(f"{summary['name']}: {summary['rounds']} rounds, final accuracy {summary['final_accuracy']:.4f} "
          f"(best {summary['best_accuracy']:.4f}){claim}; results in {run_dir.path}")


def _privacy(row: dict[str, Any]) -> str:
    """`` epsilon 1.23 (server 4.5)`` (client level: released models, aggregation server) and
    `` client epsilon 4.5`` (DP-SGD) when the row has them."""
    server = f" (server {row['epsilon_server']:.4g})" if "epsilon_server" in row else ""
    parts = [f" epsilon {row['epsilon']:.4g}{server}" if "epsilon" in row else "",
             f" client epsilon {row['client_epsilon']:.4g}" if "client_epsilon" in row else ""]
    return "".join(parts)


@app.command("run")
def run_command(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO.toml", help="the scenario to run")],
    out: Out = None, seed: Seed = None, sets: Sets = None, resume: Resume = False,
    engine: Annotated[str, typer.Option("--engine", help="embedded (in this process) or flower (Flower's "
                                        "simulation engine, Ray; needs secfl[flower])")] = "embedded",
) -> None:
    """Run a scenario and write its run directory."""
    if engine not in ("embedded", "flower"):
        raise fail(f"--engine {engine!r}: choose embedded or flower")
    _execute(scenario_path, out, seed, sets, resume, engine)


@app.command("demo")
def demo_command(
    out: Annotated[Path | None, typer.Option("--out", help="run directory (default: runs/demo-<time>)")] = None,
    seed: Seed = None, sets: Sets = None, resume: Resume = False,
) -> None:
    """Run the demo shipped inside the package (FedAvg on MNIST, 20 clients)."""
    if out is None:
        if resume:
            raise fail("--resume needs the --out directory of the demo run to continue")
        out = Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    with resources.as_file(resources.files("secfl") / "scenarios" / "demo.toml") as path:
        _execute(path, out, seed, sets, resume)


@app.command("bench")
def bench_command(
    suite_path: Annotated[Path, typer.Argument(metavar="SUITE.toml", help="the suite (a grid of scenarios) to run")],
    jobs: Annotated[int, typer.Option("--jobs", min=1, help="run cells in N worker processes")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="continue the suite in --out: skip finished cells, "
                                         "resume interrupted ones")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="bench directory (default: runs/<suite name>)")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="override a scenario key in every cell: --set "
                                                   "run.rounds=5 (repeatable; not a key the grid varies)")] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="run every cell with these seeds: --seed 0 "
                                                    "--seed 1 (replaces the suite's run.seed axis)")] = None,
) -> None:
    """Run every cell of a suite, one run directory per cell (OUT/cells/<id>/); resumable."""
    from secfl.experiments import bench
    from secfl.experiments.suite_overrides import with_overrides

    try:
        suite = with_overrides(bench.load_suite(suite_path), sets or (), seeds or ())
        out = out or Path("runs") / scenario.directory_name(suite.name, "suite")
        with bench_progress(err, fancy()) as (on_cell, on_round):
            results = bench.run_suite(suite, out, jobs=jobs, resume=resume, on_cell=on_cell, on_round=on_round)
    except SecflError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished cells and rounds are saved; continue with --resume", markup=False)
        raise typer.Exit(code=130) from None
    failed = [r for r in results if r.status == "failed"]
    skipped, na = sum(r.skipped for r in results), sum(r.status == "n/a" for r in results)
    print(f"{suite.name}: {sum(r.status == 'done' for r in results)} of {len(results)} cells done"
          f"{f' ({skipped} already finished)' if skipped else ''}{f', {na} not applicable' if na else ''}; "
          f"results in {out}; report: secfl report {out}")
    if failed:
        err.print(f"error: {len(failed)} of {len(results)} cells failed, first {failed[0].id}: {failed[0].error} "
                  f"(all in {out / 'suite.json'}; rerun the failed cells with --resume)",
                  markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=1)


@app.command("report")
def report_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="a bench directory (secfl bench --out DIR) or "
                                              "one run's (secfl run --out DIR)")],
) -> None:
    """Write DIR/report.md: for a bench, tables, heatmaps and curves of its cells; for one run, its header,
    curves and rounds; with tidy CSV beside. An unfinished bench or run is reported as far as it got."""
    from secfl.experiments.report import write_report
    from secfl.experiments.run_report import is_run_dir, write_run_report

    try:
        path = write_run_report(directory) if is_run_dir(directory) else write_report(directory)
    except SecflError as exc:
        raise fail(str(exc)) from None
    figures = sorted(p.name for p in path.parent.glob("*.png"))
    print(f"report written to {path} ({len(figures)} figures)")


audit = typer.Typer(no_args_is_help=True, help="Attack secfl's own defenses and report what each attempt obtained.")
app.add_typer(audit, name="audit")


@audit.command("protocol")
def audit_protocol_command(
    protocols: Annotated[list[str] | None, typer.Option("--protocol", help="secagg, secagg+ or he (repeatable; "
                                                        "default: all)")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="also write the markdown report to this file")] = None,
) -> None:
    """Play a malicious server, client or network against the secure sums; exit 1 if any attempt got through."""
    from secfl.audit.protocol.run import PROTOCOLS, format_report, run_protocol_audit

    try:
        attempts = run_protocol_audit(tuple(protocols) if protocols else PROTOCOLS)
    except SecflError as exc:
        raise fail(str(exc)) from None
    report = format_report(attempts)
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n")
    if any(a.in_scope and not a.refused for a in attempts):
        raise typer.Exit(code=1)


@audit.command("privacy")
def audit_privacy_command(
    paths: Annotated[list[Path], typer.Argument(help="scenario TOML files (one row of audit.md each)")],
    out: Annotated[Path, typer.Option("--out", help="directory for audit.md, PNGs and runs")] = Path("runs/privacy-audit"),
    canaries: Annotated[int | None, typer.Option("--canaries", help="canary clients m (default: min(1000, "
                                                 "num_clients // 2); 0: no epsilon audit)")] = None,
    method: Annotated[str, typer.Option("--method", help="inverting_gradients, idlg or dlg")] = "inverting_gradients",
    iterations: Annotated[int, typer.Option("--iterations", help="the inversion's optimizer steps")] = 1000,
    inversion_round: Annotated[int, typer.Option("--round", help="the round whose view is inverted (0: none)")] = 1,
    shadows: Annotated[int, typer.Option("--shadows", help="LiRA shadow models (0: loss threshold only)")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="the audit's seed (canaries, MIA samples, attack starts)")] = 0,
    malicious_model: Annotated[bool, typer.Option("--malicious-model", help="also attack through a crafted model: "
                                                  "trap weights and model inconsistency, with and without the "
                                                  "model binding")] = False,
    malicious_bins: Annotated[int, typer.Option("--malicious-bins", help="imprint units of the crafted "
                                                "model")] = 256,
    negative_control: Annotated[bool, typer.Option("--negative-control", help="also audit the same run with half "
                                                   "the noise multiplier under the same claim: the audit should "
                                                   "flag it")] = False,
    sets: Sets = None,
) -> None:
    """Invert what the server saw, attack membership on the released model, and audit epsilon with canary
    clients; write audit.md. Exit 1 if the canaries prove or flag more epsilon than the accountant claims."""
    from secfl.audit.privacy.run import PrivacyAuditOptions, audit_all

    try:
        options = PrivacyAuditOptions(canaries=canaries, inversion_round=inversion_round, inversion_method=method,
                                      inversion_iterations=iterations, shadows=shadows, seed=seed,
                                      malicious_model=malicious_model, malicious_bins=malicious_bins,
                                      negative_control=negative_control)
        specs = [scenario.load(p, overrides=list(sets or [])) for p in paths]
        with audit_progress(err, fancy()) as (progress, say):
            results, report = audit_all(specs, out, options, progress=progress,
                                        on_done=lambda result: say(audit_line(result)))
    except SecflError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished scenarios are saved; run the same command to continue", markup=False)
        raise typer.Exit(code=130) from None
    print(f"report: {report}")
    failed = [r["name"] for r in results if r["audit"].get("failed") or r["audit"].get("flagged")]
    if failed:
        err.print(f"PRIVACY AUDIT FAILED for {', '.join(failed)}: the canaries show more epsilon than the accountant "
                  "claims (the noise or the accounting is wrong); see the verdict in the report", markup=False)
        raise typer.Exit(code=1)


new = typer.Typer(no_args_is_help=True, help="Write a new project that uses secfl.")
app.add_typer(new, name="new")


@new.command("flower-app")
def new_flower_app_command(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="the app's directory (new or empty)")],
    name: Annotated[str | None, typer.Option("--name", help="the app's name (default: DIR's name; letters, "
                                             "digits and '-')")] = None,
    publisher: Annotated[str, typer.Option("--publisher", help="[tool.flwr.app] publisher")] = "secfl-user",
    force: Annotated[bool, typer.Option("--force", help="write into a non-empty DIR (overwrites the app's "
                                        "files)")] = False,
) -> None:
    """Write a Flower app (ClientApp with your PyTorch training behind secfl_mod, ServerApp running serve,
    a SecAgg+ scenario) ready for `flwr run`; needs secfl[flower]."""
    try:
        from secfl.integrations.flower.template import write_flower_app

        files = write_flower_app(directory, name=name, publisher=publisher, force=force)
    except SecflError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"{directory}: {exc.strerror or exc}") from None
    for path in files:
        print(f"wrote {path}")
    print(f"simulate it: FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run {directory} local --stream "
          f"--federation-config \"num-supernodes=5\" (deployment: {directory / 'README.md'})")


@app.command("digest")
def digest_command(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO.toml", help="the scenario the server runs")],
    seed: Seed = None, sets: Sets = None,
) -> None:
    """Print the SHA-256 of a scenario as a server sends it to Flower nodes: pin it on each node with
    --node-config "secfl-scenario-sha256='DIGEST'" and a node takes no other scenario."""
    from secfl.scenario_pin import canonical_text, digest

    overrides = list(sets or []) + ([f"run.seed={seed}"] if seed is not None else [])
    try:
        print(digest(canonical_text(scenario.load(scenario_path, overrides=overrides))))
    except SecflError as exc:
        raise fail(str(exc)) from None


@app.command("list")
def list_command() -> None:
    """List everything a scenario can name (the registry): methods, datasets, partitions, models, stages,
    protocols, groupings, aggregators, pre-aggregators and attacks, with each component's keys."""
    titles = {"method": "methods (method = ..., options in [<method>])", "dataset": "datasets",
              "partition": "partitions", "model": "models", "stage": "stages", "protocol": "protocols",
              "grouping": "groupings", "aggregator": "aggregators", "pre": "pre-aggregators (pre = [...])",
              "attack": "attacks ([attack] kind)"}
    for slot, title in titles.items():
        print(f"{title}: {', '.join(registry.names(slot))}")
    print("component keys:")
    for slot, table in registry.SLOTS.items():
        for kind, cls in table.items():
            print(f"  {slot} {kind}: {', '.join(registry.parameters(cls)) or '-'}")


def main() -> None:  # pragma: no cover - `python -m secfl`
    app()
