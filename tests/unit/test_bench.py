import json
import os

import pytest
from typer.testing import CliRunner

from secfl import scenario
from secfl.cli import app
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.experiments import bench
from secfl.runs import RunDir

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models train several times faster on one thread (and a shared CI machine stays responsive)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

BASE = """
[scenario]
run = { rounds = 2, seed = 0 }
data = { dataset = "digits", num_clients = 4 }
model = { options = { hidden = 8 } }
client = { lr = 0.1 }
"""
GRID_2X2 = 'name = "two"\n' + BASE + """
[grid]
aggregator = [{ kind = "mean" }, { kind = "median", num_byzantine = 1 }]
run.seed = [0, 1]
"""


def write(tmp_path, text, name="suite.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def suite_json(out):
    return json.loads((out / "suite.json").read_text())


def bench_cli(*args):
    return runner.invoke(app, ["bench", *map(str, args)])


# ------------------------------------------------------------------ suite file and grid


def test_grid_expands_in_file_order_with_readable_unique_ids():
    suite = bench.parse_suite({
        "scenario": {"aggregator": {"kind": "median", "num_byzantine": 1}, "data": {"num_clients": 4}},
        "grid": {"aggregator": [{"kind": "mean"}, {"kind": "trimmed_mean", "num_byzantine": 1}],
                 "data.partition": [{"kind": "iid"}, {"kind": "dirichlet", "alpha": 0.5}],
                 "run": {"seed": [0, 1]}},  # `run.seed = [...]` unquoted in TOML
        "cells": [{"aggregator": {"kind": "krum", "num_byzantine": 1}, "run": {"seed": 7}}],
    })
    cells = bench.expand(suite)
    assert suite.axes == ["aggregator", "data.partition", "run.seed"]
    assert len(cells) == 9 and len({c.id for c in cells}) == 9
    assert cells[0].id == "aggregator=mean,data.partition=iid,run.seed=0"
    assert cells[1].id == "aggregator=mean,data.partition=iid,run.seed=1"  # the last axis varies fastest
    assert cells[7].id == "aggregator=trimmed_mean-1,data.partition=dirichlet-0.5,run.seed=1"
    assert cells[7].data["aggregator"] == {"kind": "trimmed_mean", "num_byzantine": 1}  # replaced, not merged
    assert cells[7].data["data"] == {"num_clients": 4, "partition": {"kind": "dirichlet", "alpha": 0.5}}
    assert cells[7].values == {"aggregator": "trimmed_mean-1", "data.partition": "dirichlet-0.5", "run.seed": "1"}
    extra = cells[8]  # an explicit cell: base + its keys; axes it does not set come from the base (or "none")
    assert extra.id == "aggregator=krum-1,run.seed=7"
    assert extra.values == {"aggregator": "krum-1", "data.partition": "none", "run.seed": "7"}
    assert bench.roles(suite) == {"defense": ["aggregator", "data.partition"], "attack": []}


def test_empty_table_unsets_a_key_and_attack_axes_are_inferred():
    suite = bench.parse_suite({"scenario": {"attack": {"kind": "sign_flip", "num_byzantine": 1}},
                               "grid": {"attack": [{}, {"kind": "alie", "num_byzantine": 1, "options": {"z": 1.5}}],
                                        "pre": [[], [{"kind": "nnm", "num_byzantine": 1}]]}})
    cells = bench.expand(suite)
    assert "attack" not in cells[0].data and cells[0].id == "attack=none,pre=none"
    assert cells[3].id == "attack=alie-1-1.5,pre=nnm-1"
    assert bench.roles(suite) == {"defense": ["pre"], "attack": ["attack"]}


def test_variables_are_substituted_everywhere_in_the_cell():
    suite = bench.parse_suite({"scenario": {"pre": [{"kind": "nnm", "num_byzantine": "$f"}]}, "baseline": False,
                               "grid": {"attack": [{"kind": "alie", "num_byzantine": "$f"}],
                                        "aggregator": [{"kind": "krum", "num_byzantine": "$f"}], "$f": [1, 2]}})
    cells = bench.expand(suite)
    assert [c.id for c in cells] == ["attack=alie,aggregator=krum,f=1", "attack=alie,aggregator=krum,f=2"]
    data = cells[1].data
    assert data["attack"]["num_byzantine"] == data["aggregator"]["num_byzantine"] == 2
    assert data["pre"][0]["num_byzantine"] == 2  # in the base scenario too
    assert cells[1].values == {"attack": "alie", "aggregator": "krum", "$f": "2"}
    with pytest.raises(ConfigurationError, match=r"'\$g' names no variable.*defined: \['\$f'\]"):
        bench.expand(bench.parse_suite({"grid": {"aggregator": [{"kind": "krum", "num_byzantine": "$g"}],
                                                 "$f": [1]}}))


def test_long_ids_are_cut_with_a_hash_and_stay_unique():
    values = [{"kind": "gaussian_noise", "std": 0.001 * i, "padding": "x" * 150} for i in range(3)]
    cells = bench.expand(bench.parse_suite({"grid": {"stages": [[v] for v in values]}}))
    ids = [c.id for c in cells]
    assert len(set(ids)) == 3 and all(len(i) <= bench.MAX_ID and "~" in i for i in ids)
    assert ids == [c.id for c in bench.expand(bench.parse_suite({"grid": {"stages": [[v] for v in values]}}))]
    assert bench.expand(bench.parse_suite({}))[0].id == "base"  # no grid: the base scenario is the one cell
    alike = [c.id for c in bench.expand(bench.parse_suite({"grid": {"name": [1, "1"]}}))]
    assert alike[0] != alike[1] and all(i.startswith("name=1~") for i in alike)  # same label, other values
    with pytest.raises(ConfigurationError, match="cell run.seed=1 is given twice"):
        bench.expand(bench.parse_suite({"grid": {"run.seed": [0, 1]}, "cells": [{"run.seed": 1}]}))


def test_base_file_is_relative_to_the_suite_and_scenario_merges_over_it(tmp_path):
    (tmp_path / "scenarios").mkdir()
    write(tmp_path / "scenarios", '[data]\ndataset = "digits"\nnum_clients = 4\n', "base.toml")
    (tmp_path / "suites").mkdir()
    path = write(tmp_path / "suites", 'base = "../scenarios/base.toml"\n[scenario.data]\nnum_clients = 5\n'
                 '[grid]\n"client.lr" = [0.1]\n')
    suite = bench.load_suite(path)
    assert suite.name == "suite" and suite.base["data"] == {"dataset": "digits", "num_clients": 5}
    assert bench.expand(suite)[0].id == "client.lr=0.1"


@pytest.mark.parametrize("text, match", [
    ("nmae = 'x'\n", "unknown key 'nmae'"),
    ("[grid]\naggregator = { kind = 'mean' }\n", r"grid.aggregator must be a list"),
    ("[grid]\n'run.seed' = []\n", "grid.run.seed is empty"),
    ("[grid]\n'run.seed' = [0]\n[labels]\nattack = ['attack']\n", r"labels.attack .* one of the axes"),
    ("base = 'missing.toml'\n", "cannot read base scenario"),
    ("[grid\n", "not valid TOML"),
])
def test_suite_mistakes_are_named(tmp_path, text, match):
    with pytest.raises(ConfigurationError, match=match):
        bench.load_suite(write(tmp_path, text))


# ------------------------------------------------------------------ running


def test_a_bad_cell_fails_before_anything_runs(tmp_path):
    text = GRID_2X2.replace('{ kind = "median", num_byzantine = 1 }', '{ kind = "krum", num_byzantine = 1 }')
    with pytest.raises(IncompatibleStagesError, match=r"cell aggregator=krum-1,run.seed=0: .*needs >= 5"):
        bench.validate_cells(bench.expand(bench.load_suite(write(tmp_path, text))))
    out = tmp_path / "out"
    result = bench_cli(write(tmp_path, text), "--out", out)
    assert result.exit_code == 2 and "cell aggregator=krum-1,run.seed=0" in result.output
    assert "(and 1 more bad cells)" in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_bench_runs_every_cell_then_resume_skips_finished_and_completes_an_interrupted_one(tmp_path):
    out, path = tmp_path / "out", write(tmp_path, GRID_2X2)
    result = bench_cli(path, "--out", out, "--jobs", "1")
    assert result.exit_code == 0, result.output
    meta = suite_json(out)
    ids = [c["id"] for c in meta["cells"]]
    assert ids == ["aggregator=mean,run.seed=0", "aggregator=mean,run.seed=1", "aggregator=median-1,run.seed=0",
                   "aggregator=median-1,run.seed=1"]
    assert all(c["status"] == "done" and c["rounds"] == 2 for c in meta["cells"])
    assert meta["labels"] == {"defense": ["aggregator"], "attack": []} and meta["seed_axis"] == "run.seed"
    assert result.output.count("done (") == 4 and "4 of 4 cells done" in result.output
    runs = {i: RunDir(out / "cells" / i) for i in ids}
    assert all(len(r.metrics()) == 2 for r in runs.values())
    assert scenario.validate(bench.expand(bench.load_suite(path))[3].data).aggregator["kind"] == "median"

    # interrupt one cell after its first round, as a kill would leave it
    cut = ids[2]
    full = [{k: v for k, v in row.items() if k != "seconds"} for row in runs[cut].metrics()]
    for child in (out / "cells" / cut).iterdir():
        child.unlink()

    def stop(row):
        if row["round"] == 1:
            raise KeyboardInterrupt

    from secfl import engine as server

    with pytest.raises(KeyboardInterrupt):
        server.run(scenario.validate(bench.expand(bench.load_suite(path))[2].data), runs[cut], on_round=stop)
    first = runs[cut].metrics()
    assert len(first) == 1 and not runs[cut].summary_path.exists()
    stamps = {i: os.stat(runs[i].summary_path).st_mtime_ns for i in ids if i != cut}

    resumed = bench_cli(path, "--out", out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.count("finished before") == 3 and f"{cut}: final accuracy" in resumed.output
    assert {i: os.stat(runs[i].summary_path).st_mtime_ns for i in stamps} == stamps  # skipped: not rewritten
    rows = runs[cut].metrics()
    assert rows[0] == first[0]  # round 1 kept from the interrupted run (its timing too): resumed, not restarted
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in rows] == full
    assert all(c["status"] == "done" for c in suite_json(out)["cells"])


def test_bench_with_two_worker_processes(tmp_path):
    out = tmp_path / "out"
    result = bench_cli(write(tmp_path, GRID_2X2), "--out", out, "--jobs", "2")
    assert result.exit_code == 0, result.output
    cells = suite_json(out)["cells"]
    assert [c["status"] for c in cells] == ["done"] * 4 and all(c["final_accuracy"] > 0 for c in cells)
    assert all(len(RunDir(out / "cells" / c["id"]).metrics()) == 2 for c in cells)
    env = json.loads((out / "cells" / cells[0]["id"] / "env.json").read_text())
    assert env["torch_threads"] == 1  # one torch thread per worker


def test_out_that_is_not_empty_is_refused_without_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    result = bench_cli(write(tmp_path, GRID_2X2), "--out", out)
    assert result.exit_code == 2 and "not empty" in result.output and "--resume" in result.output
    result = bench_cli(write(tmp_path, GRID_2X2), "--out", out, "--resume")
    assert result.exit_code == 2 and "no suite.json" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]
    (out / "suite.json").write_text(json.dumps({"name": "another"}))
    result = bench_cli(write(tmp_path, GRID_2X2), "--out", out, "--resume")
    assert result.exit_code == 2 and "holds suite 'another', not 'two'" in result.output


def test_a_failing_cell_is_recorded_the_others_go_on_and_resume_retries_it(tmp_path, monkeypatch):
    from secfl import engine as server

    real = server.run

    def flaky(spec, run_dir, **kwargs):
        if spec.run.seed == 1 and spec.aggregator["kind"] == "mean":
            raise RuntimeError("disk on fire")
        return real(spec, run_dir, **kwargs)

    monkeypatch.setattr(server, "run", flaky)
    out, path = tmp_path / "out", write(tmp_path, GRID_2X2)
    result = bench_cli(path, "--out", out)
    assert result.exit_code == 1
    assert "FAILED aggregator=mean,run.seed=1: RuntimeError: disk on fire" in result.output
    assert "1 of 4 cells failed" in result.output and "3 of 4 cells done" in result.output
    cells = {c["id"]: c for c in suite_json(out)["cells"]}
    assert cells["aggregator=mean,run.seed=1"]["status"] == "failed"
    assert cells["aggregator=mean,run.seed=1"]["error"] == "RuntimeError: disk on fire"
    assert [c["status"] for i, c in cells.items() if i != "aggregator=mean,run.seed=1"] == ["done"] * 3

    monkeypatch.setattr(server, "run", real)
    again = bench_cli(path, "--out", out, "--resume")
    assert again.exit_code == 0, again.output
    assert again.output.count("finished before") == 3 and all(c["status"] == "done" for c in suite_json(out)["cells"])


def test_a_cell_whose_config_changed_fails_on_resume_with_the_reason(tmp_path):
    out = tmp_path / "out"
    text = 'name = "one"\n' + BASE + '[grid]\n"run.seed" = [0]\n'
    path = write(tmp_path, text)
    RunDir(out / "cells" / "run.seed=0").start({"something": "else"}, seed=0)
    (out / "suite.json").write_text(json.dumps({"name": "one"}))
    result = bench_cli(path, "--out", out, "--resume")
    assert result.exit_code == 1 and "different config" in result.output


def test_progress_bar_path(tmp_path, monkeypatch):
    import secfl.cli

    monkeypatch.setattr(secfl.cli, "fancy", lambda: True)
    text = 'name = "one"\n' + BASE + '[grid]\n"run.seed" = [0]\n'
    result = bench_cli(write(tmp_path, text), "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert suite_json(tmp_path / "out")["cells"][0]["status"] == "done"


ZIPPED = 'name = "zipped"\nskip_incompatible = true\n' + BASE + """
[grid]
aggregator = [{ kind = "mean" }, { kind = "median", num_byzantine = 1 }]

[zip.grouping]
names = ["plaintext", "secure-sum"]
grouping = [{ kind = "individual" }, { kind = "one_group" }]
"run.clients_per_round" = [4, 4]
"""


def test_zip_axis_sets_keys_together():
    joint = {"grouping": [{"kind": "individual"}, {"kind": "buckets", "size": 2}],
             "protocol": [{"kind": "plaintext"}, {"kind": "secagg"}]}
    suite = bench.parse_suite({"grid": {"aggregator": [{"kind": "mean"}]}, "zip": {"grouping": joint}})
    cells = bench.expand(suite)
    assert suite.axes == ["aggregator", "grouping"]
    assert [c.id for c in cells] == ["aggregator=mean,grouping=individual+plaintext",
                                     "aggregator=mean,grouping=buckets-2+secagg"]
    assert cells[1].data["grouping"] == {"kind": "buckets", "size": 2} and cells[1].data["protocol"]["kind"] == "secagg"
    with pytest.raises(ConfigurationError, match=r"zip.g needs lists of one length \(got a: 2, b: 1\)"):
        bench.parse_suite({"zip": {"g": {"a": [1, 2], "b": [1]}}})
    with pytest.raises(ConfigurationError, match="names must be a list of distinct names"):
        bench.parse_suite({"zip": {"g": {"a": [1, 2], "names": ["x", "x"]}}})


def test_incompatible_cells_are_not_applicable_with_skip_incompatible(tmp_path):
    strict = bench_cli(write(tmp_path, ZIPPED.replace("skip_incompatible = true\n", ""), "strict.toml"),
                       "--out", tmp_path / "strict")
    assert strict.exit_code == 2 and "grouping=secure-sum" in strict.output and "skip_incompatible" in strict.output

    out = tmp_path / "out"
    result = bench_cli(write(tmp_path, ZIPPED), "--out", out)
    assert result.exit_code == 0, result.output
    assert "n/a aggregator=median-1,grouping=secure-sum: " in result.output and "1 not applicable" in result.output
    cells = {c["id"]: c for c in suite_json(out)["cells"]}
    assert [c["status"] for c in cells.values()] == ["done", "done", "done", "n/a"]
    assert cells["aggregator=mean,grouping=secure-sum"]["overrides"]["grouping"] == {
        "name": "secure-sum", "set": {"grouping": {"kind": "one_group"}, "run.clients_per_round": 4}}
    assert not (out / "cells" / "aggregator=median-1,grouping=secure-sum").exists()
    assert RunDir(out / "cells" / "aggregator=mean,grouping=secure-sum").metrics()[-1]["groups"] == 1

    from secfl.experiments.report import write_report

    text = write_report(out).read_text()
    assert "4 cells: 3 done, 0 failed, 0 missing or unfinished, 1 not applicable." in text
    assert "| median-1 | secure-sum | n/a |" in text  # per-cell table (grouping is a defense axis here)
    assert "## Not applicable cells" in text and "Missing" not in text


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return "\nState:\tZ" not in handle.read()
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_a_killed_bench_leaves_no_worker_writing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    text = 'name = "long"\n' + BASE.replace("rounds = 2", "rounds = 400") + """
[grid]
run.seed = [0, 1, 2]
"""
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "secfl", "bench", str(write(tmp_path, text)), "--jobs", "2",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(p.stat().st_size for p in out.glob("cells/*/metrics.jsonl")):
            time.sleep(0.2)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert children, "the bench started no worker"
        proc.send_signal(signal.SIGTERM)  # a kill of the bench process alone, not of its process group
        proc.wait(timeout=30)
        time.sleep(3)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        proc.kill()


def test_rounds_inside_cells_are_reported_with_two_workers(tmp_path, monkeypatch):
    import secfl.cli

    text = GRID_2X2.replace("rounds = 2", "rounds = 60")
    seen = []
    results = bench.run_suite(bench.load_suite(write(tmp_path, text)), tmp_path / "out", jobs=2,
                              on_round=lambda cell, row: seen.append((cell, row["round"], row["of"])))
    assert all(r.status == "done" for r in results)
    assert seen and all(of == 60 and 1 <= done <= 60 for _, done, of in seen)  # read from the workers' files
    for cell in {cell for cell, _, _ in seen}:
        rounds = [done for c, done, _ in seen if c == cell]
        assert rounds == sorted(rounds)
    monkeypatch.setattr(secfl.cli, "fancy", lambda: True)  # the bars with a rounds bar per running cell
    result = bench_cli(write(tmp_path, text), "--out", tmp_path / "bars", "--jobs", "2")
    assert result.exit_code == 0, result.output


def test_last_round_reads_only_a_grown_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    sizes = {}
    assert bench._last_round(path, sizes, "c") is None  # not written yet
    path.write_text('{"round": 1}\n{"round": 2}\n')
    assert bench._last_round(path, sizes, "c") == {"round": 2}
    assert bench._last_round(path, sizes, "c") is None  # unchanged
    with path.open("a") as f:
        f.write('{"round": 3')  # a line being written
    assert bench._last_round(path, sizes, "c") is None


def test_the_readme_suite_example_is_a_valid_suite(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("Every key in one example:\n\n```toml\n")[1].split("```")[0]
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "base.toml").write_text('[model]\nkind = "mlp"\n')
    (tmp_path / "suites").mkdir()
    suite = bench.load_suite(write(tmp_path / "suites", example))
    cells = bench.expand(suite)
    assert len(cells) == 2 * 2 * 2 * 2 * 2 * 3 + 1  # aggregator, partition, attack, $f, seed, grouping; [[cells]]
    specs, not_applicable = bench.validate_cells(cells, source="README", skip_incompatible=True)
    assert len(specs) + len(not_applicable) == len(cells) and specs
