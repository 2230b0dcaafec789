import numpy as np
import pytest

from secfl.attacks import LargeNorm
from secfl.exceptions import ConfigurationError

HONEST = np.array([[3.0, 4.0], [1.0, 0.0]])  # mean (2, 2), largest norm 5


def test_length_is_factor_times_the_largest_honest_norm_against_the_mean():
    out = LargeNorm(factor=10.0)(HONEST, num_byzantine=2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, np.tile(-50.0 * np.array([1.0, 1.0]) / np.sqrt(2), (2, 1)))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 50.0)


def test_absolute_norm_overrides_the_factor():
    out = LargeNorm(factor=10.0, norm=3.0)(HONEST, num_byzantine=1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[-3.0 / np.sqrt(2), -3.0 / np.sqrt(2)]])
    assert LargeNorm(norm=3.0).strength_parameter() == "norm" and LargeNorm().strength_parameter() == "factor"


def test_zero_mean_uses_the_documented_direction():
    out = LargeNorm(norm=2.0)(np.array([[1.0, -1.0, 0.0, 0.0], [-1.0, 1.0, 0.0, 0.0]]), num_byzantine=1,
                              rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[-1.0, -1.0, -1.0, -1.0]])


@pytest.mark.parametrize("options", [{"factor": 0.0}, {"factor": -1.0}, {"norm": 0.0}, {"norm": np.inf}])
def test_bad_options(options):
    with pytest.raises(ConfigurationError):
        LargeNorm(**options)
