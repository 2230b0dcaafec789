"""Every scenario shipped in secfl/scenarios validates (components build, privacy solves)."""

from importlib import resources

import pytest

from secfl import scenario

SHIPPED = sorted(p.name for p in resources.files("secfl").joinpath("scenarios").iterdir() if p.name.endswith(".toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_validates(name):
    with resources.as_file(resources.files("secfl") / "scenarios" / name) as path:
        spec = scenario.load(path)
    assert spec.build_pipeline() is not None
    if spec.privacy.target_epsilon is not None:
        assert 0.5 < spec.stages[1]["noise_multiplier"] < 5


def test_the_shipped_list():
    assert {"demo.toml", "dp-distributed.toml", "robust-buckets.toml", "he-bfv.toml", "fedbat-secagg.toml"} <= set(SHIPPED)
