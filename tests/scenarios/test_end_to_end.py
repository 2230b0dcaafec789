"""End-to-end runs through the real `secfl` command: the demo's accuracy, kill + --resume, exit codes."""

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources

import pytest

from secfl import scenario
from secfl import engine as server
from secfl.runs import RunDir

SECFL = [sys.executable, "-m", "secfl"]
ENV = {**os.environ, "CI": "true"}


def metrics(path):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in RunDir(path).metrics()]


@pytest.mark.slow
def test_demo_reaches_90_percent_on_mnist(tmp_path):
    with resources.as_file(resources.files("secfl") / "scenarios" / "demo.toml") as path:
        spec = scenario.load(path)
    summary = server.run(spec, RunDir(tmp_path / "demo"))
    assert summary["final_accuracy"] >= 0.90


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    with resources.as_file(resources.files("secfl") / "scenarios" / "demo.toml") as path:
        demo = str(path)
        sets = ["--set", "run.rounds=12", "--set", "client.epochs=1"]
        full = subprocess.run([*SECFL, "run", demo, "--out", str(tmp_path / "full"), *sets], env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert full.returncode == 0, full.stderr
        cut = tmp_path / "cut"
        proc = subprocess.Popen([*SECFL, "run", demo, "--out", str(cut), *sets], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while len(RunDir(cut).metrics()) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        done = len(RunDir(cut).metrics())
        assert 4 <= done < 12
        resumed = subprocess.run([*SECFL, "run", demo, "--out", str(cut), *sets, "--resume"], env=ENV,
                                 capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
    assert [r["round"] for r in metrics(cut)] == list(range(1, 13))
    assert metrics(cut) == metrics(tmp_path / "full")
    assert json.loads((cut / "summary.json").read_text())["final_accuracy"] == metrics(tmp_path / "full")[-1]["accuracy"]


def test_user_mistake_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[client]\nlr_rate = 0.1\n")
    result = subprocess.run([*SECFL, "run", str(path)], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: unknown key 'client.lr_rate' (did you mean 'lr'?)"]
