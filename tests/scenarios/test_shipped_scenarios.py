"""Every scenario shipped in secfl/scenarios validates (components build, privacy solves)."""

from importlib import resources
from pathlib import Path

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


ATTACK_SCENARIOS = sorted(Path(__file__).resolve().parents[2].joinpath("attacks", "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", ATTACK_SCENARIOS, ids=lambda p: p.stem)
def test_attack_and_privacy_scenarios_validate(path):
    spec = scenario.load(path)
    assert spec.name == path.stem and spec.with_noise_solved().build_pipeline() is not None


def test_the_privacy_scenarios_cover_the_issue():
    names = {p.stem for p in ATTACK_SCENARIOS}
    assert {"privacy_plain_single", "privacy_sign_single", "privacy_secagg_b5_single", "privacy_secagg_all_single",
            "privacy_dp_eps8_single", "privacy_dp_eps1_single", "privacy_plain_realistic"} <= names
