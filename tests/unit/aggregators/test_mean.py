import numpy as np
import pytest

from secfl.aggregators import Mean
from secfl.exceptions import ConfigurationError


def test_plain_and_weighted_mean():
    x = np.array([[0.0, 2.0], [4.0, 6.0]])
    assert np.allclose(Mean()(x), [2.0, 4.0])
    assert np.allclose(Mean()(x, weights=np.array([3.0, 1.0])), [1.0, 3.0])


def test_inputs_are_not_modified():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    copy = x.copy()
    Mean()(x, weights=np.array([1.0, 2.0]))
    assert np.array_equal(x, copy)


@pytest.mark.parametrize(
    "x, w",
    [
        (np.zeros(3), None),
        (np.array([[np.nan, 1.0]]), None),
        (np.ones((2, 2)), np.array([1.0])),
        (np.ones((2, 2)), np.array([1.0, 0.0])),
    ],
)
def test_bad_inputs(x, w):
    with pytest.raises(ConfigurationError):
        Mean()(x, weights=w)
