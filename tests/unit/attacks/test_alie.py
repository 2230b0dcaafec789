import math
from statistics import NormalDist

import numpy as np
import pytest
from scipy.stats import norm

from secfl.attacks import ALittleIsEnough, alie_z
from secfl.exceptions import ConfigurationError

HONEST = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def test_paper_z_for_n20_f4_is_about_0_39():
    # s = floor(20/2 + 1) - 4 = 7; z = Phi^-1((20 - 7) / 20) = Phi^-1(0.65)
    assert alie_z(20, 4) == pytest.approx(norm.ppf(0.65), abs=1e-12)
    assert alie_z(20, 4) == pytest.approx(0.385320466407568, abs=1e-12)


def test_blades_z_matches_the_reference_table():
    # Blades / FLPoison: Phi^-1((n - f - s) / (n - f)); values from the reference catalogue (section 1.4)
    for (n, f), expected in {(12, 2): 0.000, (20, 4): 0.157, (25, 5): 0.253, (30, 6): 0.210, (50, 12): 0.336,
                             (60, 12): 0.264, (60, 18): 0.497, (100, 20): 0.286}.items():
        assert alie_z(n, f, "blades") == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("n,f", [(5, 1), (20, 4), (21, 10), (51, 12), (100, 30)])
def test_formula_against_scipy(n, f):
    s = math.floor(n / 2 + 1) - f
    assert alie_z(n, f, "paper") == pytest.approx(norm.ppf((n - s) / n), abs=1e-12)
    assert alie_z(n, f, "blades") == pytest.approx(norm.ppf((n - f - s) / (n - f)), abs=1e-12)


@pytest.mark.parametrize("n,f,formula", [(20, 11, "paper"), (20, 11, "blades"), (2, 1, "blades"), (3, 3, "paper"),
                                         (20, 4, "byzfl"), (20, 0, "paper"), (20.0, 4, "paper")])
def test_undefined_z_is_an_error(n, f, formula):
    with pytest.raises(ConfigurationError):
        alie_z(n, f, formula)


def test_default_is_mean_minus_formula_z_times_population_std():
    honest = np.random.default_rng(3).normal(size=(16, 5))
    out = ALittleIsEnough()(honest, num_byzantine=4, rng=np.random.default_rng(0))
    z = NormalDist().inv_cdf(13 / 20)  # n = 20, f = 4
    expected = honest.mean(axis=0) - z * honest.std(axis=0, ddof=0)
    np.testing.assert_allclose(out, np.tile(expected, (4, 1)), rtol=1e-12)


def test_byzfl_variant_known_answer():
    # ByzFL ALittleIsEnough(tau=1.5) on [[1,2,3],[4,5,6],[7,8,9]] gives [8.5, 9.5, 10.5]
    out = ALittleIsEnough(z=1.5, ddof=1, sign=1)(HONEST, num_byzantine=2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(out, [[8.5, 9.5, 10.5]] * 2)


def test_fixed_z_ignores_n_and_f():
    attack = ALittleIsEnough(z=1.5)
    a = attack(HONEST, num_byzantine=1, rng=np.random.default_rng(0))
    b = attack(HONEST, num_byzantine=3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(a[0], HONEST.mean(axis=0) - 1.5 * HONEST.std(axis=0))
    np.testing.assert_array_equal(a[0], b[0])


def test_resolved_strength_is_the_z_in_use():
    honest = np.zeros((16, 2))
    assert ALittleIsEnough().resolved_strength(honest, 4) == pytest.approx(0.3853204664, abs=1e-9)
    assert ALittleIsEnough(z_formula="blades").resolved_strength(honest, 4) == pytest.approx(0.1573106846, abs=1e-9)
    assert ALittleIsEnough(z=2.0).resolved_strength(honest, 4) == 2.0


def test_stays_within_z_std_of_the_mean_in_every_coordinate():
    honest = np.random.default_rng(4).normal(size=(10, 7))
    out = ALittleIsEnough(z=0.7, ddof=1)(honest, num_byzantine=2, rng=np.random.default_rng(0))
    deviation = np.abs(out[0] - honest.mean(axis=0)) / honest.std(axis=0, ddof=1)
    np.testing.assert_allclose(deviation, 0.7)


def test_ddof_1_needs_two_honest_vectors():
    with pytest.raises(ConfigurationError, match="ddof=1"):
        ALittleIsEnough(z=1.0, ddof=1)(HONEST[:1], num_byzantine=1, rng=np.random.default_rng(0))


def test_too_many_byzantine_for_the_formula():
    with pytest.raises(ConfigurationError, match="fixed z"):
        ALittleIsEnough()(HONEST, num_byzantine=5, rng=np.random.default_rng(0))


@pytest.mark.parametrize("options", [{"z": -0.1}, {"z": np.inf}, {"z_formula": "byzfl"}, {"ddof": 2}, {"sign": 0},
                                     {"sign": True}, {"ddof": 1.0}])
def test_bad_options(options):
    with pytest.raises(ConfigurationError):
        ALittleIsEnough(**options)
