import numpy as np
import pytest

from secfl.aggregators.fltrust import FLTrust
from secfl.exceptions import ConfigurationError


def slow_fltrust(x, g0):
    """Cao et al.: TS_i = ReLU(cos(x_i, g0)); x_i rescaled to ||g0||; trust-weighted mean (0 if no trust)."""
    g0_norm = np.linalg.norm(g0)
    total, trust_sum = np.zeros(x.shape[1]), 0.0
    for row in x:
        norm = np.linalg.norm(row)
        if norm == 0 or g0_norm == 0:
            continue
        trust = max(0.0, float(np.dot(row, g0)) / (norm * g0_norm))
        total += trust * row * (g0_norm / norm)
        trust_sum += trust
    return total / trust_sum if trust_sum > 0 else total


@pytest.mark.parametrize("n, d", [(1, 3), (4, 10), (9, 50), (20, 7)])
def test_matches_slow_reference(n, d, rng):
    for _ in range(5):
        g0 = rng.normal(size=d)
        x = g0 * rng.uniform(-0.5, 2.0, size=(n, 1)) + rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=(n, 1))
        assert np.allclose(FLTrust(g0)(x), slow_fltrust(x, g0), rtol=1e-12, atol=1e-12)


def test_flipped_update_gets_zero_trust(rng):
    g0 = rng.normal(size=20)
    honest = g0 + 0.3 * rng.normal(size=(5, 20))
    flipped = -1e6 * honest[:1]
    rule = FLTrust(g0)
    assert np.allclose(rule(np.vstack([honest, flipped])), rule(honest), rtol=1e-12, atol=1e-12)
    assert np.linalg.norm(rule(np.vstack([honest, flipped]))) <= np.linalg.norm(g0) * (1 + 1e-12)


def test_aligned_updates_give_g0(rng):
    g0 = rng.normal(size=8)
    x = np.outer([0.1, 3.0, 1e4], g0)
    assert np.allclose(FLTrust(g0)(x), g0, rtol=1e-12)


def test_output_norm_bounded_by_reference_norm(rng):
    g0 = rng.normal(size=30)
    x = 1e3 * rng.normal(size=(10, 30)) + g0
    assert np.linalg.norm(FLTrust(g0)(x)) <= np.linalg.norm(g0) * (1 + 1e-12)


def test_no_trust_anywhere_gives_zeros(rng):
    g0 = rng.normal(size=6)
    x = np.vstack([-g0, -2 * g0, np.zeros(6)])
    assert np.array_equal(FLTrust(g0)(x), np.zeros(6))
    assert np.array_equal(FLTrust(np.zeros(6))(rng.normal(size=(3, 6))), np.zeros(6))


def test_extreme_magnitudes_stay_finite():
    g0 = np.ones(3)
    x = np.array([[1e300, 1e300, 1e300], [1e-200, 2e-200, 1e-200], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    scaled = np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    assert np.allclose(FLTrust(g0)(x), slow_fltrust(scaled, g0), rtol=1e-12)


def test_weights_ignored_and_inputs_untouched(rng):
    g0 = rng.normal(size=5)
    x = rng.normal(size=(4, 5)) + g0
    w = rng.uniform(0.5, 2.0, size=4)
    x0, w0, g00 = x.copy(), w.copy(), g0.copy()
    rule = FLTrust(g0)
    assert np.array_equal(rule(x, weights=w), rule(x))
    assert np.array_equal(x, x0) and np.array_equal(w, w0) and np.array_equal(g0, g00)


def test_missing_reference_names_the_fix(rng):
    with pytest.raises(ConfigurationError, match=r"reference=g0"):
        FLTrust()(rng.normal(size=(3, 4)))


def test_reference_at_call_time(rng):
    g0 = rng.normal(size=4)
    x = rng.normal(size=(3, 4)) + g0
    rule = FLTrust()
    assert rule.needs_reference and not FLTrust(g0).needs_reference
    assert np.allclose(rule(x, reference=g0), slow_fltrust(x, g0), rtol=1e-12)
    assert np.array_equal(rule(x, reference=g0), FLTrust(g0)(x))
    assert rule.reference is None  # nothing kept between calls
    with pytest.raises(ConfigurationError, match="fixed reference"):
        FLTrust(g0)(x, reference=g0)
    with pytest.raises(ConfigurationError, match="finite vector"):
        rule(x, reference=np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ConfigurationError, match="d=3"):
        rule(x, reference=g0[:3])


def test_with_reference_returns_a_new_instance(rng):
    g0 = rng.normal(size=4)
    x = rng.normal(size=(3, 4)) + g0
    base = FLTrust()
    configured = base.with_reference(g0)
    assert isinstance(configured, FLTrust) and configured is not base and base.reference is None
    assert np.allclose(configured(x), slow_fltrust(x, g0), rtol=1e-12)
    with pytest.raises(ConfigurationError):
        base.with_reference(None)


def test_reference_is_copied(rng):
    g0 = rng.normal(size=4)
    x = rng.normal(size=(3, 4)) + g0
    rule = FLTrust(g0)
    before = rule(x)
    g0[:] = -g0
    assert np.array_equal(rule(x), before)
    with pytest.raises(ValueError):
        rule.reference[0] = 1.0


def test_reference_dimension_must_match(rng):
    with pytest.raises(ConfigurationError, match="d=4"):
        FLTrust(np.ones(4))(rng.normal(size=(3, 5)))


@pytest.mark.parametrize("reference", [np.ones((2, 2)), np.array([]), np.array([1.0, np.nan]), 3.0])
def test_bad_reference(reference):
    with pytest.raises(ConfigurationError):
        FLTrust(reference)


def test_min_inputs_and_name():
    assert FLTrust.name == "fltrust" and FLTrust().min_inputs == 1
    with pytest.raises(ConfigurationError):
        FLTrust(np.ones(3))(np.zeros((0, 3)))


def test_repr():
    assert repr(FLTrust()) == "FLTrust(reference=None)"
    assert repr(FLTrust(np.array([3.0, 4.0]))) == "FLTrust(reference=<vector d=2, norm=5>)"
