"""Every suite shipped in attacks/suites and benchmarks/suites loads, and all its cells validate: what
``secfl bench`` checks before it runs anything."""

from pathlib import Path

import pytest

from secfl.experiments.suite import expand, load_suite, validate_cells

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted([*ROOT.joinpath("attacks", "suites").glob("*.toml"), *ROOT.joinpath("benchmarks", "suites").glob("*.toml")])
SLOW = {"privacy_utility"}  # solves the noise multiplier of nine target epsilons (about 25 s)


def _name(path: Path) -> str:
    return f"{path.parent.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW else p for p in SUITES],
                         ids=_name)
def test_shipped_suite_validates(path):
    suite = load_suite(path)
    cells = expand(suite)
    specs, not_applicable = validate_cells(cells, source=str(path), skip_incompatible=suite.skip_incompatible)
    assert len(specs) + len(not_applicable) == len(cells) > 0


def test_the_shipped_suites():
    assert {"attacks/robustness", "benchmarks/privacy_utility", "benchmarks/fedbat_dp"} <= set(map(_name, SUITES))
