import numpy as np
import pytest
from scipy.spatial.distance import cdist

from secfl.aggregators.nnm import NearestNeighborMixing
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.types import PreAggregator

BYZFL_X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def slow_nnm(x, f):
    """Row i -> mean of its n − f nearest rows (itself first, then by distance, ties to the lower index)."""
    n = len(x)
    out = np.zeros_like(x)
    for i in range(n):
        order = sorted(range(n), key=lambda j: (j != i, np.linalg.norm(x[i] - x[j]), j))
        out[i] = np.mean([x[j] for j in order[: n - f]], axis=0)
    return out


def byzfl_style_nnm(x, f):
    """ByzFL's formulation (cdist, sort, gather an [n, n − f, d] tensor, mean): what NNM must equal."""
    k = len(x) - f
    indices = np.argsort(cdist(x, x), axis=1, kind="stable")[:, :k]
    return x[indices].mean(axis=1)


def test_byzfl_known_answer():
    # The middle row is at distance sqrt(27) from both others: the tie goes to the lower index.
    want = [[2.5, 3.5, 4.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]]
    assert np.allclose(NearestNeighborMixing(1)(BYZFL_X), want, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n, d, f", [(1, 3, 0), (4, 2, 1), (7, 5, 3), (10, 30, 2), (16, 4, 7), (30, 50, 6)])
def test_matches_slow_and_byzfl_references(n, d, f, rng):
    for _ in range(3):
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
        got = NearestNeighborMixing(f)(x)
        assert got.shape == (n, d) and got.dtype == np.float64
        assert np.allclose(got, slow_nnm(x, f), rtol=1e-12, atol=1e-12)
        assert np.allclose(got, byzfl_style_nnm(x, f), rtol=1e-12, atol=1e-12)


def test_mixing_matrix(rng):
    x = rng.normal(size=(9, 4))
    rule = NearestNeighborMixing(3)
    w = rule.mixing_matrix(x)
    assert w.shape == (9, 9)
    assert set(np.unique(w)) == {0.0, 1 / 6}
    assert np.allclose(w.sum(axis=1), 1.0)
    assert np.all(np.diag(w) == 1 / 6)
    assert np.allclose(w @ x, rule(x))


def test_each_row_includes_itself_even_among_duplicates(rng):
    row = rng.normal(size=5)
    x = np.vstack([row, row, rng.normal(size=5), row])
    # f = n − 1: each row is mixed with itself only, so the output is the input.
    assert np.array_equal(NearestNeighborMixing(3)(x), x)
    assert np.all(np.diag(NearestNeighborMixing(3).mixing_matrix(x)) == 1.0)


def test_far_byzantine_rows_are_not_mixed_into_honest_rows(rng):
    f = 3
    honest = rng.normal(size=(9, 10))
    byzantine = 1e6 * rng.normal(size=(f, 10))
    order = rng.permutation(12)
    x = np.vstack([honest, byzantine])[order]
    out = NearestNeighborMixing(f)(x)
    honest_rows = np.flatnonzero(order < 9)
    assert np.allclose(out[honest_rows], honest.mean(axis=0))


def test_is_a_pre_aggregator():
    rule = NearestNeighborMixing(1)
    assert rule.pre is True and NearestNeighborMixing.name == "nnm"
    assert isinstance(rule, PreAggregator)


def test_weights_ignored_and_inputs_untouched(rng):
    x = rng.normal(size=(6, 4))
    w = rng.uniform(0.5, 2.0, size=6)
    x0, w0 = x.copy(), w.copy()
    assert np.array_equal(NearestNeighborMixing(2)(x, weights=w), NearestNeighborMixing(2)(x))
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("f", [0, 2, 5])
def test_min_inputs_is_f_plus_1(f, rng):
    rule = NearestNeighborMixing(f)
    assert rule.min_inputs == f + 1
    if f > 0:
        with pytest.raises(IncompatibleStagesError, match=str(f + 1)):
            rule(rng.normal(size=(f, 3)))
    with pytest.raises(IncompatibleStagesError):
        rule(np.zeros((0, 3)))
    assert rule(rng.normal(size=(f + 1, 3))).shape == (f + 1, 3)


@pytest.mark.parametrize("f", [-1, 1.5, True])
def test_bad_f(f):
    with pytest.raises(ConfigurationError):
        NearestNeighborMixing(f)


def test_non_finite_input_rejected():
    with pytest.raises(ConfigurationError):
        NearestNeighborMixing(0)(np.array([[1.0, np.inf], [0.0, 0.0]]))


def test_repr():
    assert repr(NearestNeighborMixing(2)) == "NearestNeighborMixing(num_byzantine=2)"
