import numpy as np
import pytest
from scipy.spatial.distance import cdist

from secfl.aggregators import distances
from secfl.aggregators.distances import squared_distances
from secfl.exceptions import ConfigurationError


def _exact(x):
    return cdist(x, x, "sqeuclidean")  # differences first: no cancellation


@pytest.mark.parametrize("n, d", [(1, 4), (2, 1), (5, 3), (13, 50), (30, 1000)])
def test_matches_cdist_on_random_data(n, d, rng):
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10.0, size=(n, 1)) + rng.normal(size=d)
    got = squared_distances(x)
    assert got.shape == (n, n) and got.dtype == np.float64
    assert np.allclose(got, _exact(x), rtol=1e-9, atol=0)


def test_symmetric_non_negative_zero_diagonal(rng):
    x = rng.normal(size=(9, 20)) + 1e3
    got = squared_distances(x)
    assert np.array_equal(got, got.T)
    assert np.all(got >= 0)
    assert np.array_equal(np.diag(got), np.zeros(9))


def test_identical_rows_are_exactly_zero(rng):
    row = rng.normal(size=100) * 1e4
    x = np.vstack([row, rng.normal(size=100), row, row])
    got = squared_distances(x)
    assert got[0, 2] == got[2, 0] == got[0, 3] == got[2, 3] == 0.0
    assert np.allclose(got, _exact(x), rtol=1e-9, atol=0)


def test_near_duplicates_keep_relative_precision(rng):
    # Rows of norm ~1e5 that differ by ~1e-6: the Gram formula cancels all 16 digits.
    base = rng.normal(size=200) * 1e4
    x = np.vstack([base + 1e-7 * rng.normal(size=200) for _ in range(4)] + [rng.normal(size=200)])
    got = squared_distances(x)
    want = _exact(x)
    assert np.allclose(got, want, rtol=1e-10, atol=0)
    # The test can fail: without the exact fallback the close pairs are garbage.
    raw = squared_distances(x, rtol=0.0)
    assert not np.allclose(raw[:4, :4], want[:4, :4], rtol=1e-3, atol=0)


def test_pairs_much_closer_than_their_cluster(rng):
    # One cluster of near-duplicates (all pairs flagged) inside which rows 1 and 2 are 1e-9 apart
    # while ~1e-3 from row 0: re-centring on row 0 cancels again for (1, 2), which is summed directly.
    base = rng.normal(size=300) * 1e4
    u, v = rng.normal(size=300), rng.normal(size=300)
    x = np.vstack([base, base + 1e-3 * u, base + 1e-3 * u + 1e-9 * v, base - 2e-3 * u, rng.normal(size=300)])
    got = squared_distances(x)
    assert np.allclose(got, _exact(x), rtol=1e-8, atol=0)
    assert got[1, 2] > 0


def test_mimic_copies_and_two_clusters(rng):
    honest = rng.normal(size=(6, 400)) * 50 + 1e3
    x = np.vstack([honest, np.tile(honest[2], (3, 1)), np.tile(honest[4] + 1e-8, (2, 1))])
    got = squared_distances(x)
    assert np.allclose(got, _exact(x), rtol=1e-9, atol=0)
    assert got[2, 6] == got[6, 7] == got[7, 8] == 0.0


def test_clusters_of_copies_take_one_pass_not_one_per_pair(rng, monkeypatch):
    calls = []
    monkeypatch.setattr(distances, "_exact_pairs", lambda *args: calls.append(args))
    x = np.vstack([rng.normal(size=(4, 50)), np.tile(rng.normal(size=50) + 100.0, (6, 1))])
    got = squared_distances(x)
    assert calls == []  # the re-centred cluster Gram settles every pair of copies
    assert np.all(got[4:, 4:] == 0.0)


def test_zero_rows(rng):
    x = np.vstack([np.zeros(5), np.zeros(5), rng.normal(size=5)])
    assert np.allclose(squared_distances(x), _exact(x), rtol=1e-12, atol=0)


def test_float32_input_is_accumulated_in_float64_and_not_modified(rng):
    x = rng.normal(size=(6, 300)).astype(np.float32)
    copy = x.copy()
    got = squared_distances(x)
    assert got.dtype == np.float64
    assert np.allclose(got, _exact(x.astype(np.float64)), rtol=1e-9, atol=0)
    assert np.array_equal(x, copy)


def test_input_not_modified(rng):
    x = rng.normal(size=(5, 7))
    copy = x.copy()
    squared_distances(x)
    assert np.array_equal(x, copy)


@pytest.mark.parametrize("x", [np.zeros(3), np.zeros((2, 2, 2))])
def test_bad_shape(x):
    with pytest.raises(ConfigurationError):
        squared_distances(x)


def test_bad_rtol():
    with pytest.raises(ConfigurationError):
        squared_distances(np.zeros((2, 2)), rtol=-1.0)
