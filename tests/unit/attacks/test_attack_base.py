"""The shared call checks of every update attack (secfl/attacks/base.py)."""

import numpy as np
import pytest

from secfl.attacks import UPDATE_ATTACKS, InnerProductManipulation, SignFlip, build_attack
from secfl.attacks.base import check_honest
from secfl.exceptions import ConfigurationError

HONEST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


@pytest.mark.parametrize("honest", [
    np.ones(3),                      # 1-D
    np.ones((2, 3, 1)),              # 3-D
    np.ones((3, 0)),                 # no columns
    np.ones((0, 3)),                 # no rows
    np.array([[1.0, np.nan]]),       # non-finite
    np.array([[1.0, np.inf]]),
    np.array([[True, False]]),       # not real numbers
    np.array([[1 + 1j, 2.0]]),
    np.array([["a", "b"]]),
])
@pytest.mark.parametrize("kind", sorted(UPDATE_ATTACKS))
def test_bad_honest_vectors_are_refused(kind, honest):
    with pytest.raises(ConfigurationError):
        build_attack({"kind": kind})(honest, num_byzantine=1, rng=np.random.default_rng(0),
                                     aggregator=lambda x: x.mean(axis=0))


@pytest.mark.parametrize("f", [0, -1, 1.0, 2.5, True, None, "2"])
def test_num_byzantine_must_be_an_int_at_least_one(f):
    with pytest.raises(ConfigurationError, match="num_byzantine"):
        SignFlip()(HONEST, num_byzantine=f, rng=np.random.default_rng(0))


def test_numpy_integer_f_is_accepted():
    assert SignFlip()(HONEST, num_byzantine=np.int64(2), rng=np.random.default_rng(0)).shape == (2, 3)


@pytest.mark.parametrize("rng", [None, 0, np.random.RandomState(0)])
def test_rng_must_be_a_generator(rng):
    with pytest.raises(ConfigurationError, match="Generator"):
        SignFlip()(HONEST, num_byzantine=1, rng=rng)


def test_integer_and_float32_inputs_become_float64_without_touching_the_input():
    for honest in (HONEST.astype(np.int64), HONEST.astype(np.float32)):
        before = honest.copy()
        out = SignFlip()(honest, num_byzantine=2, rng=np.random.default_rng(0))
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, np.tile(-HONEST.mean(axis=0), (2, 1)))
        np.testing.assert_array_equal(honest, before)


def test_check_honest_returns_a_view_of_float64_input():
    assert check_honest("x", HONEST) is HONEST or np.shares_memory(check_honest("x", HONEST), HONEST)


def test_overflow_to_infinity_is_an_error_not_a_silent_inf():
    with pytest.raises(ConfigurationError, match="non-finite"):
        InnerProductManipulation(1e10)(np.full((2, 2), 1e300), num_byzantine=1, rng=np.random.default_rng(0))


def test_the_rows_are_independent_arrays():
    out = SignFlip()(HONEST, num_byzantine=2, rng=np.random.default_rng(0))
    out[0] += 1.0
    np.testing.assert_array_equal(out[1], -HONEST.mean(axis=0))
