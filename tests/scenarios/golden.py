"""Golden per-round metrics of every shipped scenario: the safety net for engine refactors.

Every scenario TOML in ``secfl/scenarios/`` and ``attacks/scenarios/`` is run through the engine
(``secfl.engine.run``) shrunk by ``OVERRIDES`` (``--set``-style: two rounds, the fewest that carry state
across rounds: server momentum, worker momentum, FedBAT's public alphas, the privacy ledger), and each
round's accuracy and loss, rounded to ``DIGITS`` decimals, go to ``golden.json`` next to this file::

    {"secfl/scenarios/demo.toml": {"overrides": ["run.rounds=2"], "slow": false,
                                   "rounds": [{"round": 1, "accuracy": 0.73, "loss": 1.289889}, ...]},
     "attacks/scenarios/privacy_dp_eps8_single.toml": {"overrides": [...], "slow": true,
                                   "nondeterministic": true, "reason": "...", "num_rounds": 2}}

A scenario whose noise comes from the OS CSPRNG (``nondeterminism``) has no stored values: it is marked
``"nondeterministic": true`` with the reason and ``test_golden.py`` checks only that it completes its
rounds with finite accuracies in [0, 1]. Every other scenario is run twice when writing, and the two
runs must agree exactly (else writing fails: find out why before marking anything).

Regenerate (only when a change of the numbers is intended)::

    .venv/bin/python tests/scenarios/golden.py --write
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `python tests/scenarios/golden.py` from a checkout
    sys.path.insert(0, str(ROOT))

from secfl import engine, scenario  # noqa: E402
from secfl.runs import RunDir  # noqa: E402

GOLDEN = Path(__file__).with_name("golden.json")
SCENARIO_DIRS = ("secfl/scenarios", "attacks/scenarios")
ROUNDS = 2
OVERRIDES = (f"run.rounds={ROUNDS}",)
DIGITS = 6
SLOW_SECONDS = 2.0  # a case whose single run takes longer than this is marked slow
THREADS = 1  # torch intra-op threads while a scenario runs: float sums must not depend on the machine's cores


def scenario_keys() -> list[str]:
    """Every shipped scenario, as its path relative to the repository (posix)."""
    return [f"{folder}/{path.name}" for folder in SCENARIO_DIRS for path in sorted((ROOT / folder).glob("*.toml"))]


def load(key: str, overrides: tuple[str, ...] | list[str] = OVERRIDES) -> scenario.Scenario:
    """The shrunk scenario, as ``secfl run KEY --set ...`` would load it."""
    return scenario.load(ROOT / key, overrides=list(overrides))


def nondeterminism(spec: scenario.Scenario) -> str | None:
    """Why the scenario's runs differ under the same seed (noise not drawn from the experiment RNG), or None."""
    for i, stage in enumerate(spec.stages):
        kind = stage.get("kind")
        if kind == "gaussian_noise" and stage.get("secure", True):
            placement = stage.get("placement", "client" if "std" in stage else "distributed")
            return (f"stages[{i}] gaussian_noise (placement={placement!r}, secure mode, the default) draws its "
                    "noise from the OS CSPRNG (secfl.hazmat.csprng), not from the run seed")
        if kind == "gaussian_noise" and stage.get("placement") == "central":
            return (f"stages[{i}] gaussian_noise (placement='central', secure=false) draws its noise at decode from "
                    "a fresh unseeded numpy generator")
        if kind == "ddgauss":
            return (f"stages[{i}] ddgauss rounds and samples its discrete noise from the OS CSPRNG "
                    "(secfl.hazmat.csprng / discrete)")
    return None


@contextmanager
def _pinned_torch() -> Iterator[None]:
    """Deterministic torch (as tests/conftest.py sets it) with ``THREADS`` threads, restored afterwards."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def run(key: str, workdir: Path, overrides: tuple[str, ...] | list[str] = OVERRIDES) -> list[dict[str, Any]]:
    """Run the shrunk scenario through the engine in ``workdir``; each round's accuracy and loss (rounded)."""
    return run_spec(load(key, overrides), workdir)


def run_spec(spec: scenario.Scenario, workdir: Path) -> list[dict[str, Any]]:
    """``run`` of a scenario already loaded with ``load`` (loading solves the noise: not free)."""
    run_dir = RunDir(workdir / "run")
    with _pinned_torch():
        engine.run(spec, run_dir)
    return [{"round": row["round"], "accuracy": _rounded(row["accuracy"]), "loss": _rounded(row["loss"])}
            for row in run_dir.metrics()]


def _rounded(value: Any) -> float:
    value = float(value)
    return round(value, DIGITS) if math.isfinite(value) else value


def record(key: str) -> dict[str, Any]:
    """The golden entry of one scenario: run it twice and compare (see the module doc)."""
    reason = nondeterminism(load(key))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        first = run(key, Path(tmp) / "first")
        seconds = time.perf_counter() - start
        second = run(key, Path(tmp) / "second")
    entry: dict[str, Any] = {"overrides": list(OVERRIDES), "slow": seconds > SLOW_SECONDS}
    if reason is not None:
        entry.update({"nondeterministic": True, "reason": reason, "num_rounds": len(first)})
        agreed = "the two runs differ" if first != second else "the two runs agreed this time"
        print(f"{key}: nondeterministic ({agreed})"
              f", {seconds:.1f} s")
        return entry
    if first != second:
        raise SystemExit(f"{key}: two runs with the same seed differ and the spec shows no OS-CSPRNG noise; "
                         f"find out why before storing it:\n  {first}\n  {second}")
    if len(first) != ROUNDS:
        raise SystemExit(f"{key}: ran {len(first)} rounds, expected {ROUNDS}")
    entry["rounds"] = first
    print(f"{key}: {[(r['accuracy'], r['loss']) for r in first]}, {seconds:.1f} s")
    return entry


def read() -> dict[str, dict[str, Any]]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


def write(only: list[str] | None = None) -> None:
    unknown = sorted(set(only or ()) - set(scenario_keys()))
    if unknown:
        raise SystemExit(f"not shipped scenarios: {unknown}")
    kept = read() if only else {}
    golden = {key: kept[key] if only and key not in only and key in kept else record(key) for key in scenario_keys()}
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN.relative_to(ROOT)}: {len(golden)} scenarios, "
          f"{sum('nondeterministic' in e for e in golden.values())} nondeterministic")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="run every shipped scenario and rewrite golden.json")
    parser.add_argument("--only", nargs="+", metavar="KEY", help="with --write: record only these scenarios "
                        "(e.g. a new one), keeping the other entries")
    args = parser.parse_args(argv)
    if not args.write:
        parser.print_help()
        return
    write(args.only)


if __name__ == "__main__":
    main()
