import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.stages import LowBitQuantize
from secfl.types import Update


def test_values_are_on_the_level_grid_and_unbiased():
    stage = LowBitQuantize(bits=3)  # 3 levels
    x = np.array([0.3, -0.1, 0.05, 0.0, -0.4], dtype=np.float32)
    norm = np.linalg.norm(x.astype(np.float64))
    rng = np.random.default_rng(0)
    outs = np.stack([stage.encode(Update(0, x), rng=rng).values for _ in range(40_000)]).astype(np.float64)
    levels = np.round(np.abs(outs) / norm * 3, 4)
    assert np.all(np.isin(levels, [0, 1, 2, 3]))
    assert np.all(np.sign(outs) * np.sign(x) >= 0)
    se = outs.std(axis=0) / np.sqrt(len(outs)) + 1e-12
    assert np.all(np.abs(outs.mean(axis=0) - x) <= 6 * se)


def test_zero_update_and_bad_arguments():
    out = LowBitQuantize().encode(Update(0, np.zeros(4, np.float32)), rng=np.random.default_rng(0))
    assert np.array_equal(out.values, np.zeros(4, np.float32))
    for bits in (1, 17, 2.5, True):
        with pytest.raises(ConfigurationError):
            LowBitQuantize(bits)
