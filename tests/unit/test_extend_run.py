"""A finished run extended with more rounds (``secfl run --resume --set run.rounds=N``) equals the longer run."""

from __future__ import annotations

import pytest

from secfl import ConfigurationError, engine, scenario
from secfl.runs import RunDir

BASE = {"name": "extend", "run": {"rounds": 2, "seed": 3}, "data": {"dataset": "digits", "num_clients": 4},
        "model": {"kind": "mlp", "options": {"hidden": 8}}, "client": {"lr": 0.1}}


def spec(rounds: int, **changes):
    return scenario.validate({**BASE, "run": {"rounds": rounds, "seed": 3}, **changes})


@pytest.mark.usefixtures("one_torch_thread")
def test_extending_a_finished_run_equals_running_longer(tmp_path):
    engine.run(spec(2), RunDir(tmp_path / "short"))
    summary = engine.run(spec(3), RunDir(tmp_path / "short"), resume=True)
    engine.run(spec(3), RunDir(tmp_path / "long"))
    extended, longer = RunDir(tmp_path / "short").metrics(), RunDir(tmp_path / "long").metrics()
    assert [r["round"] for r in extended] == [1, 2, 3] and summary["rounds"] == 3
    assert [(r["accuracy"], r["loss"]) for r in extended] == [(r["accuracy"], r["loss"]) for r in longer]


def test_anything_but_more_rounds_is_still_refused(tmp_path):
    engine.run(spec(2), RunDir(tmp_path / "run"))
    with pytest.raises(ConfigurationError, match=r"\(client, run differ\).*only more run.rounds may be added"):
        engine.run(spec(3, client={"lr": 0.2}), RunDir(tmp_path / "run"), resume=True)
    with pytest.raises(ConfigurationError, match=r"\(run differ\)"):
        engine.run(spec(1), RunDir(tmp_path / "run"), resume=True)
