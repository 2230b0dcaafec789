import json

import pytest

from secfl.exceptions import ConfigurationError
from secfl.runs import RunDir, atomic_write


def test_start_writes_config_env_and_refuses_a_second_start(tmp_path):
    run = RunDir(tmp_path / "r")
    run.start({"a": 1, "b": {"c": "x"}}, seed=7)
    assert (tmp_path / "r" / "config.toml").read_text().startswith("a = 1")
    env = json.loads((tmp_path / "r" / "env.json").read_text())
    assert env["seed"] == 7 and env["packages"]["numpy"]
    with pytest.raises(ConfigurationError, match="--resume"):
        run.start({"a": 1}, seed=7)


def test_resume_trims_lines_past_the_checkpoint_and_a_torn_line(tmp_path):
    run = RunDir(tmp_path / "r")
    run.start({"a": 1}, seed=0)
    for r in (1, 2, 3):
        run.append_metrics({"round": r})
        if r < 3:
            run.save_checkpoint({"round": r})
    with open(run.metrics_path, "a") as handle:
        handle.write('{"round": 4, "acc')  # killed mid-write
    assert [row["round"] for row in run.metrics()] == [1, 2, 3]
    done, checkpoint = run.resume({"a": 1})
    assert done == 2 and checkpoint["round"] == 2
    assert [row["round"] for row in run.metrics()] == [1, 2]


def test_resume_needs_a_run_with_the_same_config(tmp_path):
    run = RunDir(tmp_path / "r")
    with pytest.raises(ConfigurationError, match="no run"):
        run.resume({"a": 1})
    run.start({"a": 1}, seed=0)
    with pytest.raises(ConfigurationError, match="different config"):
        run.resume({"a": 2})
    assert run.resume({"a": 1}) == (0, None)


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "f"
    atomic_write(path, b"one")
    atomic_write(path, b"two")
    assert path.read_bytes() == b"two" and list(tmp_path.iterdir()) == [path]
