"""Every shipped scenario gives the stored per-round accuracy (exactly) and loss (to 1e-4 relative)
(golden.json, same seed, same shrink).

golden.json is written by ``python tests/scenarios/golden.py --write``; each case reruns exactly what the
writer ran (the entry's overrides). Scenarios with OS-CSPRNG noise only have to complete their rounds.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest


def _import_golden():
    name = "secfl_tests_golden"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("golden.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


golden = _import_golden()

GOLDEN = golden.read()


def _case(key, entry):
    return pytest.param(key, entry, id=key, marks=[pytest.mark.slow] if entry["slow"] else [])


@pytest.mark.parametrize(("key", "entry"), [_case(k, e) for k, e in GOLDEN.items()])
def test_scenario_matches_golden(key, entry, tmp_path):
    spec = golden.load(key, entry["overrides"])
    assert (golden.nondeterminism(spec) is not None) == entry.get("nondeterministic", False), (
        f"{key}: the spec's randomness changed since golden.json was written; regenerate it")
    rows = golden.run_spec(spec, tmp_path)
    if entry.get("nondeterministic"):
        assert [r["round"] for r in rows] == list(range(1, entry["num_rounds"] + 1))
        assert all(math.isfinite(r["accuracy"]) and 0.0 <= r["accuracy"] <= 1.0 for r in rows), rows
    else:  # accuracies exactly; losses to 1e-4 relative (float sums may round differently on another CPU)
        assert [(r["round"], r["accuracy"]) for r in rows] == [(r["round"], r["accuracy"]) for r in entry["rounds"]]
        assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in entry["rounds"]], rel=1e-4)


def test_golden_covers_every_shipped_scenario():
    assert list(GOLDEN) == golden.scenario_keys(), "a scenario was added or removed: run golden.py --write"
