import pytest

from secfl import registry
from secfl.aggregators import Median
from secfl.exceptions import ConfigurationError
from secfl.stages import Quantize


def test_build_passes_keys_to_the_constructor():
    rule = registry.build("aggregator", {"kind": "median", "num_byzantine": 2})
    assert isinstance(rule, Median) and rule.min_inputs == 5
    assert isinstance(registry.build("stage", {"kind": "quantize", "scale": 256.0}), Quantize)


@pytest.mark.parametrize(
    "slot, spec, match",
    [
        ("aggregator", {"kind": "medain"}, "did you mean 'median'"),
        ("aggregator", {"kind": "median", "num_byz": 1}, "unknown key 'num_byz'.*did you mean 'num_byzantine'"),
        ("stage", {"kind": "l2clip"}, "needs the key.*norm"),
        ("stage", {"norm": 1.0}, "'kind'"),
        ("protocol", "plaintext", "'kind'"),
        ("stage", {"kind": "l2clip", "norm": -1}, "norm"),
    ],
)
def test_build_errors_name_the_problem(slot, spec, match):
    with pytest.raises(ConfigurationError, match=match):
        registry.build(slot, spec)


def test_every_component_has_a_unique_name():
    for table in registry.SLOTS.values():
        assert all(cls.name == kind for kind, cls in table.items())
