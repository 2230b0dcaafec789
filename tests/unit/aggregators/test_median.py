import numpy as np
import pytest

from secfl.aggregators import Median
from secfl.exceptions import ConfigurationError


def test_median_ignores_a_minority_of_outliers():
    honest = np.array([[1.0, 2.0], [1.1, 2.1], [0.9, 1.9]])
    byzantine = np.full((2, 2), 1e9)
    out = Median(num_byzantine=2)(np.vstack([honest, byzantine]))
    assert np.all(out >= honest.min(0)) and np.all(out <= honest.max(0))


def test_min_inputs_is_2f_plus_1():
    assert Median(3).min_inputs == 7


@pytest.mark.parametrize("f", [-1, 1.5, True])
def test_bad_f(f):
    with pytest.raises(ConfigurationError):
        Median(f)
