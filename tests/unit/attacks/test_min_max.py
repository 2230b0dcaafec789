import numpy as np
import pytest

from secfl.attacks import MinMax, MinSum
from secfl.attacks.min_max import perturbation
from secfl.exceptions import ConfigurationError

TOL = 1e-5


def pairwise(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))  # small inputs only


def honest_set(seed, n=8, d=12, shift=0.5):
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def max_distance(m, honest):
    return pairwise(m[None], honest).max()


def sum_squares(m, honest):
    return (pairwise(m[None], honest) ** 2).sum()


def test_hand_checked_perturbations():
    honest = np.array([[0.0, 0.0], [2.0, -4.0]])
    np.testing.assert_allclose(perturbation(honest, "std"), -np.array([2.0, 4.0]) / np.sqrt(2))  # ddof=1
    np.testing.assert_allclose(perturbation(honest, "unit"), -np.array([1.0, -2.0]) / np.sqrt(5))
    np.testing.assert_allclose(perturbation(honest, "sign"), [-1.0, 1.0])


def test_hand_checked_min_max_on_two_points():
    # g = (0, 0), (2, 0): mean (1, 0), diameter 2, p = -std(ddof=1) = (-sqrt 2, 0). The binding honest
    # vector is (2, 0): 1 + gamma sqrt 2 <= 2 gives gamma_max = 1 / sqrt 2 and m = (0, 0)
    honest = np.array([[0.0, 0.0], [2.0, 0.0]])
    attack = MinMax(search="exact")
    assert attack.solve_gamma(honest) == pytest.approx(1 / np.sqrt(2))
    np.testing.assert_allclose(attack(honest, num_byzantine=2, rng=np.random.default_rng(0)), [[0.0, 0.0]] * 2,
                               atol=1e-15)


def test_hand_checked_min_sum_on_two_points():
    # sum_i ||m - g_i||^2 = 2 (1 + 2 gamma^2) <= max_i sum_j ||g_i - g_j||^2 = 4 gives gamma = 1 / sqrt 2
    honest = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert MinSum(search="exact").solve_gamma(honest) == pytest.approx(1 / np.sqrt(2))


@pytest.mark.parametrize("deviation", ["std", "unit", "sign"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_min_max_stays_inside_the_honest_diameter_and_gamma_is_maximal(deviation, seed):
    honest = honest_set(seed)
    diameter = pairwise(honest, honest).max()
    binary, exact = MinMax(deviation=deviation), MinMax(deviation=deviation, search="exact")
    gamma, gamma_exact = binary.solve_gamma(honest), exact.solve_gamma(honest)
    m = binary(honest, num_byzantine=3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(m, np.tile(honest.mean(axis=0) + gamma * perturbation(honest, deviation), (3, 1)))
    assert max_distance(m[0], honest) <= diameter * (1 + 1e-12)
    assert 0 <= gamma_exact - gamma <= 2 * TOL  # the search's tolerance
    # exact: on the boundary; any larger gamma leaves the bound
    m_exact = exact(honest, num_byzantine=1, rng=np.random.default_rng(0))[0]
    assert max_distance(m_exact, honest) == pytest.approx(diameter, rel=1e-9)
    assert max_distance(honest.mean(axis=0) + (gamma_exact + 1e-6) * perturbation(honest, deviation), honest) > diameter


@pytest.mark.parametrize("deviation", ["std", "unit", "sign"])
@pytest.mark.parametrize("bound", ["max", "min"])
def test_min_sum_stays_inside_its_bound_and_gamma_is_maximal(deviation, bound):
    honest = honest_set(3)
    scores = (pairwise(honest, honest) ** 2).sum(axis=1)
    limit = scores.max() if bound == "max" else scores.min()
    attack = MinSum(deviation=deviation, bound=bound)
    gamma = attack.solve_gamma(honest)
    gamma_exact = MinSum(deviation=deviation, bound=bound, search="exact").solve_gamma(honest)
    m = attack(honest, num_byzantine=2, rng=np.random.default_rng(0))[0]
    assert sum_squares(m, honest) <= limit * (1 + 1e-12)
    assert 0 <= gamma_exact - gamma <= 2 * TOL
    p = perturbation(honest, deviation)
    assert sum_squares(honest.mean(axis=0) + gamma_exact * p, honest) == pytest.approx(limit, rel=1e-9)
    assert sum_squares(honest.mean(axis=0) + (gamma_exact + 1e-6) * p, honest) > limit


def test_the_authors_min_sum_bound_is_stricter():
    honest = honest_set(4)
    assert MinSum(bound="min").solve_gamma(honest) < MinSum(bound="max").solve_gamma(honest)


def test_binary_search_never_exceeds_twice_gamma_init():
    honest = honest_set(5, shift=0.0) * 100.0  # "unit": gamma in absolute units, the true maximum is large
    exact = MinMax(deviation="unit", search="exact").solve_gamma(honest)
    capped = MinMax(deviation="unit").solve_gamma(honest)
    assert exact > 20.0 and 20.0 - 2 * TOL <= capped < 20.0
    assert MinMax(deviation="unit", gamma_init=exact).solve_gamma(honest) == pytest.approx(exact, abs=2 * TOL)


def test_fixed_gamma_skips_the_search():
    honest = honest_set(6)
    out = MinMax(gamma=3.0)(honest, num_byzantine=1, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out[0], honest.mean(axis=0) - 3.0 * honest.std(axis=0, ddof=1))
    assert MinSum(gamma=3.0).resolved_strength(honest, 1) == 3.0


@pytest.mark.parametrize("cls", [MinMax, MinSum])
@pytest.mark.parametrize("deviation", ["std", "unit", "sign"])
@pytest.mark.parametrize("search", ["binary", "exact"])
def test_identical_honest_vectors_give_their_value(cls, deviation, search):
    honest = np.tile([1.0, -2.0], (4, 1))  # diameter 0: only gamma = 0 fits (std: p = 0)
    attack = cls(deviation=deviation, search=search)
    assert attack.solve_gamma(honest) == 0.0
    np.testing.assert_array_equal(attack(honest, num_byzantine=2, rng=np.random.default_rng(0)), honest[:2])


def test_needs_two_honest_vectors():
    with pytest.raises(ConfigurationError, match=">= 2"):
        MinMax()(np.ones((1, 3)), num_byzantine=1, rng=np.random.default_rng(0))


@pytest.mark.parametrize("options", [{"deviation": "ones"}, {"gamma": -1.0}, {"search": "grid"}, {"gamma_init": 0.0},
                                     {"tol": 0.0}, {"tol": np.nan}])
def test_bad_options(options):
    for cls in (MinMax, MinSum):
        with pytest.raises(ConfigurationError):
            cls(**options)
    with pytest.raises(ConfigurationError, match="bound"):
        MinSum(bound="median")
