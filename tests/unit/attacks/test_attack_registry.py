import numpy as np
import pytest

from secfl.attacks import (UPDATE_ATTACKS, Adaptive, ALittleIsEnough, GaussianAttack, InnerProductManipulation,
                           LargeNorm, Mimic, MinMax, MinSum, SignFlip, TargetedLogits, build_attack)
from secfl.exceptions import ConfigurationError


def test_the_registry_keys():
    assert UPDATE_ATTACKS == {"sign_flip": SignFlip, "gaussian": GaussianAttack, "alie": ALittleIsEnough,
                              "ipm": InnerProductManipulation, "min_max": MinMax, "min_sum": MinSum, "mimic": Mimic,
                              "large_norm": LargeNorm, "adaptive": Adaptive, "targeted_logits": TargetedLogits}


def test_build_passes_options():
    attack = build_attack({"kind": "alie", "z": 1.5})
    assert isinstance(attack, ALittleIsEnough) and attack.z == 1.5
    nested = build_attack({"kind": "adaptive", "attack": {"kind": "min_max", "deviation": "unit"}, "budget": 12})
    assert isinstance(nested.attack, MinMax) and nested.attack.deviation == "unit" and nested.budget == 12


def test_unknown_kind_lists_the_choices():
    with pytest.raises(ConfigurationError, match=r"did you mean 'alie'\?.*'sign_flip'"):
        build_attack({"kind": "alei"})


def test_unknown_option_lists_the_valid_ones():
    expected = r"unknown option 'tau'.*valid options: \['z', 'z_formula', 'ddof', 'sign'\]"
    with pytest.raises(ConfigurationError, match=expected):
        build_attack({"kind": "alie", "tau": 1.5})


@pytest.mark.parametrize("spec", [{}, {"z": 1.5}, "alie", None, {"kind": 3}])
def test_not_a_spec(spec):
    with pytest.raises(ConfigurationError):
        build_attack(spec)


def test_bad_value_comes_from_the_constructor():
    with pytest.raises(ConfigurationError, match="epsilon"):
        build_attack({"kind": "ipm", "epsilon": -1.0})


def test_every_class_documents_formula_defaults_and_references():
    for cls in UPDATE_ATTACKS.values():
        doc = cls.__doc__
        assert "Args:" in doc and "Guarantee:" in doc and "References:" in doc, cls


def test_built_attacks_run():
    honest = np.random.default_rng(0).normal(size=(6, 3))
    for kind in UPDATE_ATTACKS:
        spec = {"kind": kind, **({"classes": 3} if kind == "targeted_logits" else {})}  # logits of 3 classes
        out = build_attack(spec)(honest, num_byzantine=2, rng=np.random.default_rng(0),
                                           aggregator=lambda x: np.median(x, axis=0))
        assert out.shape == (2, 3)
