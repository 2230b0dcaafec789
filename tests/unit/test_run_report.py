"""``secfl report RUN_DIR`` on one run: header, rounds table, curves, CSV; bench directories unchanged."""

from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from secfl import ConfigurationError, engine, scenario
from secfl.cli import app
from secfl.experiments.run_report import write_run_report
from secfl.runs import RunDir

SPEC = {"name": "one", "run": {"rounds": 3, "seed": 1}, "data": {"dataset": "digits", "num_clients": 4},
        "model": {"kind": "mlp", "options": {"hidden": 8}}, "client": {"lr": 0.1}}


@pytest.mark.usefixtures("one_torch_thread")
def test_a_single_run_report(tmp_path):
    run = RunDir(tmp_path / "run")
    engine.run(scenario.validate(SPEC), run)
    result = CliRunner().invoke(app, ["report", str(run.path)])
    assert result.exit_code == 0, result.output
    text = (run.path / "report.md").read_text()
    rows = run.metrics()
    assert "# Run report: one" in text and "3 of 3 rounds (finished); seed 1" in text
    assert f"Final accuracy {rows[-1]['accuracy']:.4f} (round 3)" in text
    assert text.count("\n| ") == 1 + 3 and (run.path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    with open(run.path / "rounds.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["accuracy"]) for r in table] == [r["accuracy"] for r in rows]


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigurationError, match="holds no run"):
        write_run_report(tmp_path)
