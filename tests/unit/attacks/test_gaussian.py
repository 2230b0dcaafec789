import numpy as np
import pytest

from secfl.attacks import GaussianAttack
from secfl.exceptions import ConfigurationError

HONEST = np.zeros((4, 3))


def test_rows_are_mu_plus_sigma_times_the_rngs_standard_normals():
    out = GaussianAttack(mu=1.0, sigma=3.0)(HONEST, num_byzantine=2, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(out, 1.0 + 3.0 * np.random.default_rng(5).standard_normal((2, 3)))


def test_shared_sends_one_draw_to_every_client_as_byzfl():
    out = GaussianAttack(shared=True)(HONEST, num_byzantine=3, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(out, np.tile(np.random.default_rng(5).standard_normal(3), (3, 1)))


def test_sigma_zero_is_the_constant_mu():
    out = GaussianAttack(mu=-2.0, sigma=0.0)(HONEST, num_byzantine=2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.full((2, 3), -2.0))


def test_moments_over_many_draws():
    out = GaussianAttack(mu=0.5, sigma=2.0)(np.zeros((1, 20_000)), num_byzantine=2, rng=np.random.default_rng(1))
    assert abs(out.mean() - 0.5) < 0.05 and abs(out.std() - 2.0) < 0.05  # 40,000 draws: se 0.01


@pytest.mark.parametrize("options", [{"sigma": -1.0}, {"sigma": np.inf}, {"mu": np.nan}, {"shared": 1}])
def test_bad_options(options):
    with pytest.raises(ConfigurationError):
        GaussianAttack(**options)
