from importlib import resources

import pytest

from secfl import scenario
from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_defaults_and_resolved_config(tmp_path):
    spec = scenario.load(write(tmp_path, 'name = "x"\n[client]\nlr = 0.1\n'))
    resolved = spec.resolved()
    assert resolved["client"]["lr"] == 0.1 and resolved["run"]["rounds"] == 20
    assert "clients_per_round" not in resolved["run"]  # None is left out: TOML has no null
    assert spec.clients_per_round == spec.data.num_clients


@pytest.mark.parametrize(
    "text, match",
    [
        ("[client]\nlrr = 0.1\n", r"unknown key 'client.lrr' \(did you mean 'lr'\?\)"),
        ("[clinet]\nlr = 0.1\n", r"unknown key 'clinet' \(did you mean 'client'\?\)"),
        ("[data.partition]\nalfa = 0.5\n", r"unknown key 'data.partition.alfa' \(did you mean 'alpha'\?\)"),
        ("[client]\nlr = -1\n", r"client.lr: .*greater than 0"),
        ('aggregator = { kind = "median", num_byz = 1 }\n', "unknown key 'num_byz'"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_mistakes_name_the_key(tmp_path, text, match):
    with pytest.raises(ConfigurationError, match=match):
        scenario.load(write(tmp_path, text))


def test_aggregator_needing_more_groups_is_refused_at_load(tmp_path):
    text = 'aggregator = { kind = "median", num_byzantine = 2 }\ngrouping = { kind = "one_group" }\n'
    with pytest.raises(IncompatibleStagesError, match='buckets", size = 4'):
        scenario.load(write(tmp_path, text))


def test_overrides(tmp_path):
    path = write(tmp_path, "[client]\nlr = 0.1\n")
    spec = scenario.load(path, overrides=["client.lr=0.2", "data.partition.kind=dirichlet",
                                          "data.partition.alpha=0.5", "name=renamed", "model.options={hidden = 64}"])
    assert spec.client.lr == 0.2 and spec.data.partition.alpha == 0.5 and spec.name == "renamed"
    assert spec.model.options == {"hidden": 64}
    with pytest.raises(ConfigurationError, match="client.lrr"):
        scenario.load(path, overrides=["client.lrr=1"])
    with pytest.raises(ConfigurationError, match="KEY.PATH=VALUE"):
        scenario.load(path, overrides=["client.lr"])
    with pytest.raises(ConfigurationError, match="not a table"):
        scenario.load(path, overrides=["client.lr.x=1"])


def test_clients_per_round_cannot_exceed_clients(tmp_path):
    with pytest.raises(ConfigurationError, match="clients_per_round"):
        scenario.load(write(tmp_path, "[run]\nclients_per_round = 30\n[data]\nnum_clients = 20\n"))


def test_missing_file():
    with pytest.raises(ConfigurationError, match="cannot read"):
        scenario.load("/nonexistent/s.toml")


def test_shipped_demo_is_valid():
    with resources.as_file(resources.files("secfl") / "scenarios" / "demo.toml") as path:
        spec = scenario.load(path)
    assert spec.data.dataset == "mnist" and spec.data.num_clients == 20
    assert spec.protocol == {"kind": "secagg+"} and spec.grouping == {"kind": "one_group"}


def test_natural_partition_needs_matching_synthetic_data(tmp_path):
    path = write(tmp_path, '[data]\npartition = { kind = "natural" }\n')
    with pytest.raises(ConfigurationError, match="needs dataset 'synthetic'"):
        scenario.load(path)
    with pytest.raises(ConfigurationError, match="make them equal"):
        scenario.load(path, overrides=["data.dataset=synthetic", "data.options={num_clients = 5}"])
    assert scenario.load(path, overrides=["data.dataset=synthetic"]).data.partition.kind == "natural"
