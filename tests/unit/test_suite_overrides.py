"""``secfl bench --set/--seed``, the automatic no-attack baseline, and ``secfl --version``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from secfl import __version__
from secfl.cli import app
from secfl.exceptions import ConfigurationError
from secfl.experiments.suite import expand, parse_suite
from secfl.experiments.suite_overrides import with_overrides

SUITE = {"name": "s", "scenario": {"run": {"rounds": 3, "seed": 0}, "data": {"dataset": "digits", "num_clients": 8}},
         "grid": {"aggregator": [{"kind": "mean"}, {"kind": "median", "num_byzantine": 1}],
                  "attack": [{"kind": "sign_flip", "num_byzantine": 1}]}}


def test_an_attack_axis_gets_its_no_attack_baseline_unless_turned_off():
    cells = expand(parse_suite(SUITE))
    assert [c.values["attack"] for c in cells] == ["none", "sign_flip-1"] * 2
    assert "attack" not in cells[0].data
    off = expand(parse_suite({**SUITE, "baseline": False}))
    assert [c.values["attack"] for c in off] == ["sign_flip-1"] * 2
    with pytest.raises(ConfigurationError, match="baseline must be true or false"):
        parse_suite({**SUITE, "baseline": "yes"})


def test_set_applies_to_every_cell_and_seed_replaces_the_seed_axis():
    suite = with_overrides(parse_suite(SUITE), ["run.rounds=5", "client.lr=0.2"], [3, 4])
    cells = expand(suite)
    assert len(cells) == 8
    assert {c.data["run"]["rounds"] for c in cells} == {5} and {c.data["client"]["lr"] for c in cells} == {0.2}
    assert sorted({c.data["run"]["seed"] for c in cells}) == [3, 4] and all("run.seed=" in c.id for c in cells)
    again = with_overrides(suite, seeds=[7])
    assert {c.data["run"]["seed"] for c in expand(again)} == {7}


@pytest.mark.parametrize("sets, seeds, match", [(["aggregator.kind=krum"], [], "is an axis"),
                                                (["attack={}"], [], "is an axis"), (["nodot"], [], "KEY.PATH"),
                                                ([], [1, 1], "distinct"), ([], [-1], "distinct integers >= 0")])
def test_bad_overrides_are_configuration_errors(sets, seeds, match):
    with pytest.raises(ConfigurationError, match=match):
        with_overrides(parse_suite(SUITE), sets, seeds)


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"secfl {__version__}"
