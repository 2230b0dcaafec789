import numpy as np
import pytest

from secfl.aggregators.trimmed_mean import TrimmedMean
from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def reference_trimmed_mean(x: np.ndarray, f: int) -> np.ndarray:
    """Per coordinate: a sorted Python list, drop f from each end, average the rest."""
    n, d = x.shape
    out = []
    for j in range(d):
        column = sorted(float(x[i, j]) for i in range(n))
        kept = column[f : n - f]
        out.append(sum(kept) / len(kept))
    return np.array(out)


CASES = [(1, 4, 0), (3, 5, 1), (4, 3, 1), (6, 7, 2), (7, 2, 3), (10, 6, 3), (11, 8, 5), (30, 9, 6), (2, 3, 0)]


@pytest.mark.parametrize("n, d, f", CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_matches_sorted_list_reference(n, d, f, ties, rng):
    x = rng.normal(scale=3.0, size=(n, d))
    if ties:
        x = np.round(x)  # many equal values per coordinate
    assert np.allclose(TrimmedMean(f)(x), reference_trimmed_mean(x, f), rtol=1e-12, atol=1e-12)


def test_byzfl_known_answer():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    assert np.array_equal(TrimmedMean(1)(x), [4.0, 5.0, 6.0])
    assert np.allclose(TrimmedMean(0)(x), [4.0, 5.0, 6.0])


def test_f0_is_the_mean_and_2f_plus_1_rows_is_the_median(rng):
    x = rng.normal(size=(7, 11))
    assert np.allclose(TrimmedMean(0)(x), x.mean(0))
    assert np.allclose(TrimmedMean(3)(x), np.median(x, axis=0))


def test_ties_drop_exactly_f_values_each_side():
    x = np.array([[0.0], [0.0], [0.0], [5.0], [5.0]])
    assert TrimmedMean(1)(x)[0] == pytest.approx(5.0 / 3.0)  # drops one 0 and one 5: mean of 0, 0, 5
    assert TrimmedMean(2)(x)[0] == 0.0


@pytest.mark.parametrize("n, f", [(5, 2), (10, 3), (30, 6), (31, 15)])
def test_stays_in_honest_range_with_f_byzantine_rows(n, f, rng):
    honest = rng.normal(size=(n - f, 20))
    byzantine = np.full((f, 20), 1e6)
    byzantine[::2] = -1e6  # both sides
    x = rng.permutation(np.vstack([honest, byzantine]))
    out = TrimmedMean(f)(x)
    assert np.all(out >= honest.min(0) - 1e-12) and np.all(out <= honest.max(0) + 1e-12)


def test_weights_are_ignored(rng):
    x = rng.normal(size=(6, 4))
    assert np.array_equal(TrimmedMean(1)(x), TrimmedMean(1)(x, weights=np.arange(1.0, 7.0)))


def test_inputs_not_modified_and_float64_out(rng):
    x = rng.normal(size=(7, 5))
    x0 = x.copy()
    out = TrimmedMean(2)(x)
    assert np.array_equal(x, x0) and out.dtype == np.float64 and out.shape == (5,)
    assert TrimmedMean(1)(x.astype(np.float32)).dtype == np.float64


def test_min_inputs_is_2f_plus_1(rng):
    assert TrimmedMean(2).min_inputs == 5
    with pytest.raises(IncompatibleStagesError, match="5"):
        TrimmedMean(2)(rng.normal(size=(4, 3)))
    assert TrimmedMean(2)(rng.normal(size=(5, 3))).shape == (3,)


@pytest.mark.parametrize("f", [-1, 1.5, True, "1", None])
def test_bad_f(f):
    with pytest.raises(ConfigurationError):
        TrimmedMean(f)


def test_name_and_repr():
    assert TrimmedMean.name == "trimmed_mean"
    assert repr(TrimmedMean(2)) == "TrimmedMean(num_byzantine=2)"
