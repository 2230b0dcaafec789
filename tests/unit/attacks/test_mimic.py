import numpy as np
import pytest

from secfl.attacks import Mimic
from secfl.attacks.mimic import top_direction_index
from secfl.exceptions import ConfigurationError


def test_copies_the_client_farthest_along_the_top_principal_direction():
    # spread mostly along x; row 3 is the farthest from the mean along it
    honest = np.array([[1.0, 0.0], [-1.0, 0.1], [0.5, -0.1], [-3.0, 0.0], [2.5, 0.0]])
    out = Mimic()(honest, num_byzantine=3, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, np.tile(honest[3], (3, 1)))


def test_top_direction_index_matches_an_svd_reference(rng):
    for _ in range(20):
        honest = rng.normal(size=(7, 4)) * [5.0, 1.0, 1.0, 0.5]
        centred = honest - honest.mean(axis=0)
        v = np.linalg.svd(centred, full_matrices=False)[2][0]
        assert top_direction_index(honest) == int(np.argmax(np.abs(centred @ v)))


def test_output_is_an_honest_vector(rng):
    honest = rng.normal(size=(6, 9))
    out = Mimic()(honest, num_byzantine=2, rng=rng)
    assert any(np.array_equal(out[0], row) for row in honest) and np.array_equal(out[0], out[1])


def test_fixed_index_as_byzfl_and_flpoison():
    honest = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(Mimic(target=2)(honest, num_byzantine=1, rng=np.random.default_rng(0)), honest[2:3])
    np.testing.assert_array_equal(Mimic(0)(honest, num_byzantine=2, rng=np.random.default_rng(0)), honest[[0, 0]])


def test_identical_rows_copy_row_0():
    assert top_direction_index(np.ones((3, 2))) == 0


def test_index_beyond_the_honest_rows_is_an_error():
    with pytest.raises(ConfigurationError, match="only 2 honest"):
        Mimic(target=2)(np.ones((2, 3)), num_byzantine=1, rng=np.random.default_rng(0))


@pytest.mark.parametrize("target", [-1, 1.0, True, "first", None])
def test_bad_target(target):
    with pytest.raises(ConfigurationError, match="target"):
        Mimic(target)
