import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from secfl.experiments import bench
from secfl.cli import app
from secfl.exceptions import ConfigurationError
from secfl.experiments.report import write_report
from secfl.runs import RunDir, atomic_write

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"

SUITE = """
name = "grid"
[scenario]
run = { rounds = 2, seed = 0 }
data = { dataset = "digits", num_clients = 4 }
model = { options = { hidden = 8 } }
client = { lr = 0.1 }

[grid]
attack = [{}, { kind = "sign_flip", num_byzantine = 1 }]
aggregator = [{ kind = "mean" }, { kind = "median", num_byzantine = 1 }]
"data.partition" = [{ kind = "iid" }, { kind = "dirichlet", alpha = 1.0 }]
"run.seed" = [0, 1]

[labels]
defense = ["aggregator"]
attack = ["attack"]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2 x 2 x 2 (x 2 seeds) bench directory, run once for the module."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("bench")
    (root / "suite.toml").write_text(SUITE)
    results = bench.run_suite(bench.load_suite(root / "suite.toml"), root / "out")
    torch.set_num_threads(threads)
    assert [r.status for r in results] == ["done"] * 16
    return root / "out"


def copy(source, tmp_path):
    return shutil.copytree(source, tmp_path / "out")


def final(out, cell):
    return RunDir(out / "cells" / cell).metrics()[-1]["accuracy"]


def table_row(text, first):
    """The cells of the first markdown table row starting with ``| first |``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_report_tables_worst_case_and_figures(finished, tmp_path):
    out = copy(finished, tmp_path)
    path = write_report(out)
    text = path.read_text()
    assert path == out / "report.md"
    assert f"secfl bench {finished.parent / 'suite.toml'} --out {finished}" in text
    assert f"secfl report {finished}" in text and "16 cells: 16 done, 0 failed" in text
    # per cell: mean ± std over the two seeds
    ids = [f"attack=sign_flip-1,aggregator=median-1,data.partition=iid,run.seed={s}" for s in (0, 1)]
    accs = [final(out, i) for i in ids]
    row = table_row(text, "sign_flip-1 | median-1 | iid")
    assert row[3] == f"{np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f}" and row[4] == "2/2"
    # worst case per defense over attacks, per setting (data.partition is neither defense nor attack)
    assert "### data.partition=iid" in text and "### data.partition=dirichlet-1" in text
    finals = {a: [final(out, f"attack={a},aggregator=mean,data.partition=iid,run.seed={s}") for s in (0, 1)]
              for a in ("none", "sign_flip-1")}
    cell = {a: f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}" for a, v in finals.items()}  # spread over seeds
    worst = min(finals, key=lambda a: np.mean(finals[a]))  # the worst case carries its attack's spread
    row = table_row(text, "mean")  # the first setting's table comes first
    assert row[1:] == [cell["none"], cell["sign_flip-1"], cell[worst]]
    assert "## Worst case across settings" in text
    for name in ("heatmap-data.partition=iid.png", "heatmap-data.partition=dirichlet-1.png", "worst_case.png",
                 "curves-data.partition=iid.png", "curves-data.partition=dirichlet-1.png"):
        assert f"]({name})" in text
        assert (out / name).read_bytes()[:8] == PNG and (out / name).stat().st_size > 5000
    assert "Missing" not in text and "attack success" not in text


def test_report_on_a_partial_suite_marks_missing_cells(finished, tmp_path):
    out = copy(finished, tmp_path)
    meta = json.loads((out / "suite.json").read_text())
    killed, failed = meta["cells"][1]["id"], meta["cells"][3]["id"]  # both mean under sign_flip? see asserts
    run = RunDir(out / "cells" / killed)
    run.summary_path.unlink()
    rows = run.metrics()[:1]
    atomic_write(run.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    shutil.rmtree(out / "cells" / failed)
    meta["cells"][3].update(status="failed", error="RuntimeError: boom")
    (out / "suite.json").write_text(json.dumps(meta))

    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    assert "16 cells: 14 done, 1 failed, 1 missing or unfinished" in text
    assert f"- `{killed}`: partial (1/2 rounds)" in text and f"- `{failed}`: failed: RuntimeError: boom" in text
    assert "--resume" in text
    # cells 1 and 3 are (no attack, mean, iid, seed 1) and (no attack, mean, dirichlet, seed 1): one seed left
    assert killed == "attack=none,aggregator=mean,data.partition=iid,run.seed=1"
    assert table_row(text, "none | mean | iid")[4] == "1/2"
    assert (out / "heatmap-data.partition=iid.png").exists()


def test_report_marks_a_worst_case_over_missing_attacks(finished, tmp_path):
    out = copy(finished, tmp_path)
    for seed in (0, 1):
        shutil.rmtree(out / "cells" / f"attack=sign_flip-1,aggregator=mean,data.partition=iid,run.seed={seed}")
    text = write_report(out).read_text()
    row = table_row(text, "mean")
    assert row[2] == "missing" and row[3].endswith("*") and row[3][:-1] == row[1]
    assert "sign_flip-1 | mean | iid | missing | 0/2" in text


def test_asr_is_tabulated_and_drawn_when_rounds_log_it(finished, tmp_path):
    out = copy(finished, tmp_path)
    for cell in (out / "cells").iterdir():
        if cell.name.startswith("attack=sign_flip"):
            run = RunDir(cell)
            rows = [{**r, "asr": 0.25 * r["round"]} for r in run.metrics()]
            atomic_write(run.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    text = write_report(out).read_text()
    assert "## Backdoor attack success rate" in text and "final ASR" in text
    assert table_row(text, "sign_flip-1 | mean | iid")[-1] == "0.5000 ± 0.0000"  # round 2 of both seeds
    assert table_row(text, "none | mean | iid")[-1] == "-"  # no ASR logged: not "missing"
    assert (out / "asr-data.partition=iid.png").read_bytes()[:8] == PNG


def test_inferred_labels_and_no_settings(tmp_path):
    """Without [labels]: "attack" keys are attack axes, the rest (but the seed) defense axes; one heatmap."""
    meta = {"name": "x", "suite": "s.toml", "out": str(tmp_path), "axes": ["aggregator", "attack"],
            "seed_axis": None, "labels": bench.roles(bench.parse_suite({"grid": {"aggregator": [{"kind": "mean"}],
                                                                                 "attack": [{}]}})),
            "cells": [{"id": "a", "values": {"aggregator": "mean", "attack": "none"}, "rounds": 1,
                       "status": "pending"}]}
    assert meta["labels"] == {"defense": ["aggregator"], "attack": ["attack"]}
    (tmp_path / "suite.json").write_text(json.dumps(meta))
    text = write_report(tmp_path).read_text()
    assert "| mean | missing | missing |" in text and "- `a`: missing" in text
    assert (tmp_path / "heatmap.png").exists() and (tmp_path / "curves.png").exists()


def test_report_needs_a_bench_directory(tmp_path):
    with pytest.raises(ConfigurationError, match="no readable suite.json"):
        write_report(tmp_path)
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "secfl bench" in result.output


def test_report_writes_tidy_csv_and_the_round_count(finished, tmp_path):
    import csv

    out = copy(finished, tmp_path)
    text = write_report(out).read_text()
    assert "Rounds per cell: 2." in text
    with open(out / "cells.csv", newline="") as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 16 and set(cells[0]) >= {"cell", "attack", "aggregator", "run.seed", "state", "final_accuracy"}
    one = next(c for c in cells if c["cell"] == "attack=none,aggregator=mean,data.partition=iid,run.seed=0")
    assert float(one["final_accuracy"]) == final(out, one["cell"]) and one["state"] == "done"
    with open(out / "rounds.csv", newline="") as f:
        rounds = list(csv.DictReader(f))
    assert len(rounds) == 32 and {r["round"] for r in rounds} == {"1", "2"}
    assert float(next(r for r in rounds if r["cell"] == one["cell"] and r["round"] == "2")["accuracy"]) \
        == final(out, one["cell"])
