"""Every registered update attack: shape [f, d], float64, finite, inputs untouched, deterministic per rng,
rebuildable from its options, and independent of the position of its options in a spec."""

import numpy as np
import pytest

from secfl.aggregators import Median
from secfl.attacks import UPDATE_ATTACKS, UpdateAttack, build_attack

SPECS = {kind: {"kind": kind} for kind in UPDATE_ATTACKS}
SPECS["alie-byzfl"] = {"kind": "alie", "z": 1.5, "ddof": 1, "sign": 1}
SPECS["alie-blades"] = {"kind": "alie", "z_formula": "blades", "ddof": 1, "sign": 1}
SPECS["min_max-unit-exact"] = {"kind": "min_max", "deviation": "unit", "search": "exact"}
SPECS["min_sum-sign-min"] = {"kind": "min_sum", "deviation": "sign", "bound": "min"}
SPECS["mimic-0"] = {"kind": "mimic", "target": 0}
SPECS["gaussian-shared"] = {"kind": "gaussian", "shared": True}
SPECS["adaptive-ipm"] = {"kind": "adaptive", "attack": {"kind": "ipm"}, "budget": 8, "objective": "inner_product"}
SPECS["adaptive-gaussian"] = {"kind": "adaptive", "attack": "gaussian", "budget": 6}
SPECS["targeted_logits"] = {"kind": "targeted_logits", "classes": 3, "target": 1}  # vectors of 6 = 2 x 3 logits


def call(attack, honest, f=3, seed=7):
    return attack(honest, num_byzantine=f, rng=np.random.default_rng(seed), aggregator=Median(3))


def test_every_registered_attack_is_covered_and_named_by_its_key():
    assert set(UPDATE_ATTACKS) <= {spec["kind"] for spec in SPECS.values()}
    for kind, cls in UPDATE_ATTACKS.items():
        assert cls.name == kind and issubclass(cls, UpdateAttack)


@pytest.mark.parametrize("case", sorted(SPECS))
def test_shape_dtype_finite_untouched_deterministic(case, rng):
    honest = rng.normal(size=(9, 6)) + 0.3
    before = honest.copy()
    attack = build_attack(SPECS[case])
    out = call(attack, honest)
    assert out.shape == (3, 6) and out.dtype == np.float64 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(honest, before)
    np.testing.assert_array_equal(out, call(attack, honest))           # same rng seed, same rows
    np.testing.assert_array_equal(out, call(build_attack(attack.params() | {"kind": attack.name}), honest))
    assert call(attack, honest, f=1).shape == (1, 6)


@pytest.mark.parametrize("case", sorted(SPECS))
def test_repr_names_the_class_and_its_options(case):
    attack = build_attack(SPECS[case])
    text = repr(attack)
    assert text.startswith(type(attack).__name__ + "(")
    for key in attack.params():
        assert f"{key}=" in text


@pytest.mark.parametrize("kind", ["gaussian", "adaptive-gaussian"])
def test_randomised_attacks_change_with_the_seed(kind, rng):
    honest = rng.normal(size=(9, 6))
    attack = build_attack(SPECS[kind])
    assert not np.array_equal(call(attack, honest, seed=1), call(attack, honest, seed=2))
