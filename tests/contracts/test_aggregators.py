"""Every aggregator: shape, permutation invariance, min_inputs enforcement, inputs untouched."""

import numpy as np
import pytest

from secfl import registry
from secfl.exceptions import IncompatibleStagesError

CASES = [(kind, cls()) for kind, cls in registry.AGGREGATORS.items()] + [("median-f2", registry.AGGREGATORS["median"](2))]


@pytest.fixture(params=CASES, ids=[c[0] for c in CASES])
def rule(request):
    return request.param[1]


def test_every_registered_aggregator_is_covered():
    assert {c[0] for c in CASES} >= set(registry.AGGREGATORS)


def test_shape_and_dtype(rule, rng):
    x = rng.normal(size=(max(rule.min_inputs, 5), 7))
    out = rule(x)
    assert out.shape == (7,) and np.all(np.isfinite(out))


def test_permutation_invariance(rule, rng):
    x = rng.normal(size=(max(rule.min_inputs, 6), 5))
    w = rng.uniform(0.5, 2.0, size=x.shape[0])
    order = rng.permutation(x.shape[0])
    assert np.allclose(rule(x, weights=w), rule(x[order], weights=w[order]))


def test_min_inputs_enforced(rule, rng):
    if rule.min_inputs > 1:
        with pytest.raises(IncompatibleStagesError, match=str(rule.min_inputs)):
            rule(rng.normal(size=(rule.min_inputs - 1, 3)))
    with pytest.raises(IncompatibleStagesError):
        rule(np.zeros((0, 3)))


def test_identical_inputs_give_that_input(rule):
    x = np.tile(np.array([1.5, -2.0, 0.25]), (max(rule.min_inputs, 3), 1))
    assert np.allclose(rule(x), x[0])


def test_inputs_never_modified(rule, rng):
    x = rng.normal(size=(max(rule.min_inputs, 4), 3))
    w = np.ones(x.shape[0])
    x0, w0 = x.copy(), w.copy()
    rule(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
