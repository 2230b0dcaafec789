import numpy as np
import pytest

from secfl.attacks import SignFlip
from secfl.exceptions import ConfigurationError

HONEST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def test_byzfl_known_answer_is_the_negated_mean():
    out = SignFlip()(HONEST, num_byzantine=2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, [[-4.0, -5.0, -6.0]] * 2)  # ByzFL SignFlipping on this input


def test_scale_multiplies_the_negated_mean():
    out = SignFlip(scale=2.5)(HONEST, num_byzantine=1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[-10.0, -12.5, -15.0]])


def test_against_the_mean_the_aggregate_reverses_once_f_times_scale_exceeds_n_honest():
    byz = SignFlip(scale=2.0)(HONEST, num_byzantine=2, rng=np.random.default_rng(0))  # f * scale = 4 > 3
    aggregate = np.vstack([HONEST, byz]).mean(axis=0)
    np.testing.assert_allclose(aggregate, HONEST.mean(axis=0) * (3 - 4) / 5)


@pytest.mark.parametrize("scale", [0, -1.0, np.inf, np.nan, True, "1"])
def test_bad_scale(scale):
    with pytest.raises(ConfigurationError, match="scale"):
        SignFlip(scale)
