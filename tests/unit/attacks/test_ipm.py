import numpy as np
import pytest

from secfl.attacks import InnerProductManipulation
from secfl.exceptions import ConfigurationError

HONEST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def test_default_is_minus_0_1_times_the_mean():
    out = InnerProductManipulation()(HONEST, num_byzantine=3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[-0.4, -0.5, -0.6]] * 3)


def test_byzfl_known_answer_with_epsilon_2():
    out = InnerProductManipulation(2.0)(HONEST, num_byzantine=1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[-8.0, -10.0, -12.0]])  # ByzFL IPM(tau=2) on this input


@pytest.mark.parametrize("epsilon", [0.1, 1.0, 100.0])
def test_direction_is_opposite_to_the_honest_mean(epsilon, rng):
    honest = rng.normal(size=(7, 5)) + 1.0
    out = InnerProductManipulation(epsilon)(honest, num_byzantine=2, rng=rng)
    mean = honest.mean(axis=0)
    np.testing.assert_allclose(out, np.tile(-epsilon * mean, (2, 1)))
    assert np.all(out @ mean < 0)
    cosine = out[0] @ mean / (np.linalg.norm(out[0]) * np.linalg.norm(mean))
    assert cosine == pytest.approx(-1.0)


def test_against_the_mean_the_inner_product_turns_negative_when_f_eps_exceeds_n_honest():
    mean = HONEST.mean(axis=0)
    for f, epsilon, sign in ((2, 1.0, 1), (2, 2.0, -1)):  # f * eps = 2 < 3, then 4 > 3
        byz = InnerProductManipulation(epsilon)(HONEST, num_byzantine=f, rng=np.random.default_rng(0))
        assert np.sign(np.vstack([HONEST, byz]).mean(axis=0) @ mean) == sign


@pytest.mark.parametrize("epsilon", [0.0, -0.1, np.nan, None, False])
def test_bad_epsilon(epsilon):
    with pytest.raises(ConfigurationError, match="epsilon"):
        InnerProductManipulation(epsilon)
