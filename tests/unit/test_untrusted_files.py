"""Files secfl opens may come from someone else: none may run code, no name may leave runs/."""

import os

import pytest
import torch
from typer.testing import CliRunner

from secfl.cli import app
from secfl.exceptions import ConfigurationError
from secfl.runs import RunDir, load_checkpoint

from test_cli import SMALL  # the tiny scenario the CLI tests run


class Payload:
    """Unpickling this object would create ``marker`` (standing in for any code an attacker picks)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(path, marker):
    torch.save({"round": 1, "model": {}, "evil": Payload(marker)}, path)


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _crafted_checkpoint(tmp_path / "checkpoint.pt", marker)
    with pytest.raises(ConfigurationError, match="only tensors and plain data"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_secfl_run_resume_refuses_a_crafted_checkpoint_without_running_it(tmp_path):
    scenario, out, marker = tmp_path / "s.toml", tmp_path / "run", tmp_path / "pwned"
    scenario.write_text(SMALL)
    assert CliRunner().invoke(app, ["run", str(scenario), "--out", str(out)]).exit_code == 0
    _crafted_checkpoint(out / "checkpoint.pt", marker)
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out), "--resume"])
    assert result.exit_code == 2 and "not a checkpoint secfl wrote" in result.output
    assert not marker.exists()


def test_a_real_checkpoint_still_resumes(tmp_path):
    run = RunDir(tmp_path)
    run.start({"a": 1}, seed=0)
    run.append_metrics({"round": 1})
    run.save_checkpoint({"round": 1, "model": {"w": torch.ones(2)}, "dp_sgd": {"steps": 3}, "fedbat": None})
    done, checkpoint = run.resume({"a": 1})
    assert done == 1 and torch.equal(checkpoint["model"]["w"], torch.ones(2)) and checkpoint["dp_sgd"] == {"steps": 3}


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden", "/abs", "a\\b", ""])
def test_a_scenario_name_that_is_not_a_plain_directory_name_is_refused(tmp_path, name):
    scenario = tmp_path / "s.toml"
    scenario.write_text(SMALL.replace('name = "tiny"', f"name = {name!r}".replace("'", '"')))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, ["run", str(scenario)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2 and "cannot name a directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.toml"]  # nothing written anywhere  # nothing written anywhere


def test_a_suite_name_that_is_not_a_plain_directory_name_is_refused(tmp_path):
    (tmp_path / "s.toml").write_text(SMALL)
    (tmp_path / "grid.toml").write_text('name = "../escape"\nbase = "s.toml"\n[grid]\n"run.seed" = [0, 1]\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, ["bench", "grid.toml"])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 2 and "cannot name a directory" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.toml", "s.toml"]
