import math

import numpy as np
import pytest

from secfl.aggregators.dnc import DnC
from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def slow_dnc(x, f, sub_dim, iterations, filter_frac, rng, weights=None):
    """Shejwalkar & Houmansadr Algorithm 2 with the paper's SVD; ``rng`` is advanced like DnC's sampler."""
    n, d = x.shape
    keep = n - math.floor(filter_frac * f)
    width = min(sub_dim, d)
    good = set(range(n))
    last = set()
    for _ in range(iterations if width < d else 1):
        cols = rng.choice(d, size=width, replace=False) if width < d else np.arange(d)
        sub = x[:, cols]
        mu = sub.mean(axis=0)
        _, _, vt = np.linalg.svd(sub - mu, full_matrices=False)
        v = vt[0]
        scores = [float(np.dot(sub[i] - mu, v)) ** 2 for i in range(n)]
        last = set(sorted(range(n), key=lambda i: (scores[i], i))[:keep])
        good &= last
    rows = sorted(good) if good else sorted(last)
    w = np.ones(n) if weights is None else weights
    return sum(w[i] * x[i] for i in rows) / sum(w[i] for i in rows)


@pytest.mark.parametrize(
    "n, d, f, sub_dim, iterations, filter_frac",
    [
        (5, 40, 1, 10, 5, 1.0),
        (10, 200, 3, 50, 3, 1.0),
        (12, 30, 2, 7, 4, 1.5),
        (8, 6, 2, 100, 5, 1.0),  # sub_dim >= d: one pass over every coordinate
        (6, 20, 0, 5, 2, 1.0),
    ],
)
def test_matches_slow_reference(n, d, f, sub_dim, iterations, filter_frac, rng):
    rule = DnC(f, sub_dim=sub_dim, iterations=iterations, filter_frac=filter_frac, seed=7)
    sampler = np.random.default_rng(7)
    for _ in range(3):  # successive calls draw fresh coordinates from the same stream
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
        w = rng.uniform(0.5, 2.0, size=n)
        want = slow_dnc(x, f, sub_dim, iterations, filter_frac, sampler, weights=w)
        assert np.allclose(rule(x, weights=w), want, rtol=1e-12, atol=1e-12)


def test_same_seed_same_results_and_calls_advance_the_sampler(rng):
    x = rng.normal(size=(9, 300))
    x[:, :150] *= 0.01
    x[:2, 150:] += 3.0  # rows 0, 1 stand out only on the second half of the coordinates
    a, b = DnC(2, sub_dim=4, iterations=1, seed=3), DnC(2, sub_dim=4, iterations=1, seed=3)
    first = [a(x) for _ in range(8)]
    assert all(np.array_equal(u, b(x)) for u in first)
    assert any(not np.array_equal(first[0], u) for u in first[1:])  # fresh subsets each round


def test_planted_outlier_direction_is_filtered(rng):
    n, f, d = 20, 4, 2000
    honest = rng.normal(size=(n - f, d))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    byzantine = honest.mean(axis=0) + 40.0 * direction + 0.1 * rng.normal(size=(f, d))
    order = rng.permutation(n)
    x = np.vstack([honest, byzantine])[order]
    out = DnC(f, sub_dim=500, seed=1)(x)
    assert np.allclose(out, honest.mean(axis=0))
    assert not np.allclose(x.mean(axis=0), honest.mean(axis=0), atol=0.5)


def test_empty_intersection_falls_back_to_the_last_kept_rows():
    # 1-D filters keep the row closest to the mean: row 1 on coordinate 0, row 0 on coordinate 1.
    x = np.array([[0.0, 1.0], [1.0, 0.0], [3.0, 3.0]])
    seed, iterations = 0, 6
    sampler = np.random.default_rng(seed)
    coords = [int(sampler.choice(2, size=1, replace=False)[0]) for _ in range(iterations)]
    assert set(coords) == {0, 1}  # the intersection over iterations is empty
    out = DnC(2, sub_dim=1, iterations=iterations, seed=seed)(x)
    assert np.array_equal(out, x[1] if coords[-1] == 0 else x[0])  # fedlib would return zeros


def test_no_byzantine_is_the_weighted_mean(rng):
    x = rng.normal(size=(5, 12))
    w = rng.uniform(0.5, 2.0, size=5)
    assert np.allclose(DnC(0, sub_dim=3)(x, weights=w), w @ x / w.sum())


def test_inputs_never_modified(rng):
    x = rng.normal(size=(6, 30))
    w = rng.uniform(0.5, 2.0, size=6)
    x0, w0 = x.copy(), w.copy()
    DnC(2, sub_dim=10)(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("f, frac, needed", [(0, 1.0, 1), (3, 1.0, 4), (2, 2.0, 5), (3, 0.5, 4)])
def test_min_inputs(f, frac, needed, rng):
    rule = DnC(f, filter_frac=frac)
    assert rule.min_inputs == needed
    if needed > 1:
        with pytest.raises(IncompatibleStagesError, match=str(needed)):
            rule(rng.normal(size=(needed - 1, 3)))
    assert rule(rng.normal(size=(needed, 3))).shape == (3,)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_byzantine": -1},
        {"num_byzantine": 1.0},
        {"sub_dim": 0},
        {"sub_dim": True},
        {"iterations": 0},
        {"filter_frac": -0.5},
        {"filter_frac": math.nan},
        {"filter_frac": True},
        {"filter_frac": "1"},
        {"seed": -1},
        {"seed": 1.5},
    ],
)
def test_bad_configuration(kwargs):
    with pytest.raises(ConfigurationError):
        DnC(**kwargs)


def test_repr_and_name():
    assert DnC.name == "dnc"
    assert repr(DnC(2)) == "DnC(num_byzantine=2, sub_dim=10000, iterations=5, filter_frac=1.0, seed=0)"
