import math

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.stages import L2Clip
from secfl.types import Bounds, Update


def test_long_vectors_are_scaled_to_the_norm(rng):
    out = L2Clip(2.0).encode(Update(0, np.full(4, 3.0, np.float32)), rng=rng)
    assert np.isclose(np.linalg.norm(out.values), 2.0, rtol=1e-6)
    assert np.allclose(out.values / out.values[0], 1.0)  # direction kept


def test_short_vectors_are_unchanged(rng):
    values = np.array([0.1, -0.2], np.float32)
    assert np.array_equal(L2Clip(1.0).encode(Update(0, values), rng=rng).values, values)


def test_bounds_and_decode():
    stage = L2Clip(1.5)
    assert stage.value_bound(Bounds.UNBOUNDED).l2 == pytest.approx(1.5)
    assert stage.value_bound(Bounds(linf=0.5, l2=9)).linf == 0.5
    total = np.ones(3)
    assert stage.decode(total, count=2) is total


@pytest.mark.parametrize("norm", [0, -1, math.inf, math.nan, "1"])
def test_bad_norm(norm):
    with pytest.raises(ConfigurationError, match="norm"):
        L2Clip(norm)
