import math

import numpy as np
import pytest
from scipy.optimize import minimize

from secfl.aggregators.geometric_median import GeometricMedian
from secfl.exceptions import ConfigurationError, IncompatibleStagesError

TIGHT = {"tolerance": 1e-14, "max_iterations": 100_000}


def reference_weiszfeld(x: np.ndarray, w: np.ndarray, nu: float, iterations: int) -> np.ndarray:
    """Plain smoothed Weiszfeld from the weighted mean, with explicit loops over rows and coordinates."""
    n, d = x.shape
    rows = [[float(v) for v in row] for row in x]
    total = float(sum(w))
    z = [sum(w[i] * rows[i][j] for i in range(n)) / total for j in range(d)]
    for _ in range(iterations):
        coef = [w[i] / max(math.dist(rows[i], z), nu) for i in range(n)]
        s = sum(coef)
        z = [sum(coef[i] * rows[i][j] for i in range(n)) / s for j in range(d)]
    return np.array(z)


def objective(x, w, z, nu):
    return float(w @ np.maximum(np.linalg.norm(x - z, axis=1), nu))


@pytest.mark.parametrize("n, d", [(3, 2), (4, 3), (5, 5), (8, 2), (10, 4), (6, 12), (2, 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_long_plain_weiszfeld(n, d, weighted, rng):
    x = rng.normal(size=(n, d))
    w = rng.uniform(0.5, 3.0, size=n) if weighted else np.ones(n)
    expected = reference_weiszfeld(x, w, 1e-6, 10_000)
    out = GeometricMedian(**TIGHT)(x, weights=w if weighted else None)
    assert np.allclose(out, expected, atol=1e-6)


def test_max_iterations_returns_the_last_iterate(rng):
    x = rng.normal(size=(9, 4))
    w = rng.uniform(0.5, 2.0, size=9)
    for t in (1, 2, 5):
        out = GeometricMedian(tolerance=1e-300, max_iterations=t)(x, weights=w)
        assert np.allclose(out, reference_weiszfeld(x, w, 1e-6, t), rtol=1e-12, atol=1e-12)


def test_runs_to_convergence_not_a_fixed_few_iterations(rng):
    x = rng.normal(size=(12, 6))
    out = GeometricMedian()(x)
    three = reference_weiszfeld(x, np.ones(12), 1e-6, 3)
    best = reference_weiszfeld(x, np.ones(12), 1e-6, 10_000)
    assert np.linalg.norm(out - best) < 0.1 * np.linalg.norm(three - best)


@pytest.mark.parametrize("n, d", [(5, 3), (9, 7), (15, 2)])
def test_at_least_as_good_as_scipy_on_the_smoothed_objective(n, d, rng):
    x = rng.normal(size=(n, d))
    w = rng.uniform(0.5, 2.0, size=n)
    nu = 1e-6
    found = minimize(lambda z: objective(x, w, z, nu), x.mean(0), method="Nelder-Mead",
                     options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 50_000, "maxfev": 50_000})
    out = GeometricMedian(**TIGHT)(x, weights=w)
    assert objective(x, w, out, nu) <= found.fun + 1e-9
    assert np.allclose(out, found.x, atol=1e-4)


def test_default_tolerance_reaches_the_optimum_objective(rng):
    x = rng.normal(size=(20, 8))
    best = objective(x, np.ones(20), GeometricMedian(**TIGHT)(x), 1e-6)
    assert objective(x, np.ones(20), GeometricMedian()(x), 1e-6) <= best * (1 + 1e-6)


def test_known_answers():
    collinear = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    assert np.allclose(GeometricMedian()(collinear), [4.0, 5.0, 6.0], atol=1e-5)
    # collinear but not symmetric: the mean (2, 2) is not the answer, the middle point is
    lopsided = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    assert np.allclose(GeometricMedian()(lopsided), [1.0, 1.0], atol=1e-5)
    square = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    assert np.allclose(GeometricMedian()(square), [1.0, 1.0], atol=1e-5)
    # equilateral triangle: the Fermat point is the centroid
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert np.allclose(GeometricMedian()(triangle), [0.5, math.sqrt(3) / 6], atol=1e-5)


def test_a_row_with_half_the_weight_is_the_answer():
    x = np.array([[0.0, 0.0], [3.0, 1.0], [-1.0, 4.0]])
    assert np.allclose(GeometricMedian()(x, weights=np.array([2.0, 1.0, 1.0])), [0.0, 0.0], atol=1e-5)


@pytest.mark.parametrize("n, f", [(5, 2), (10, 4), (30, 6), (31, 15)])
def test_breakdown_bound_with_byzantine_rows_at_1e6(n, f, rng):
    honest = rng.normal(size=(n - f, 10))
    x = rng.permutation(np.vstack([honest, np.full((f, 10), 1e6)]))
    centre = honest.mean(0)
    radius = np.linalg.norm(honest - centre, axis=1).max()
    out = GeometricMedian()(x)
    assert np.linalg.norm(out - centre) <= 2 * (n - f) / (n - 2 * f) * radius + 1e-6


def test_large_common_offset_keeps_precision(rng):
    noise = rng.normal(size=(7, 50))
    offset = np.full(50, 1e6)
    expected = GeometricMedian(**TIGHT)(noise) + offset
    assert np.allclose(GeometricMedian(**TIGHT)(noise + offset), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("offset", [0.0, 30.0, 1e3])
def test_fast_and_explicitly_centred_gram_agree(offset, rng, monkeypatch):
    import secfl.aggregators.geometric_median as module

    x = rng.normal(size=(8, 40)) + offset
    w = rng.uniform(0.5, 2.0, size=8)
    monkeypatch.setattr(module, "_OFFSET_RATIO", math.inf)  # always the algebraic centring
    fast = GeometricMedian(**TIGHT)(x, weights=w)
    monkeypatch.setattr(module, "_OFFSET_RATIO", 0.0)  # always the explicit centring
    explicit = GeometricMedian(**TIGHT)(x, weights=w)
    assert np.allclose(fast, explicit, rtol=0, atol=1e-6 * max(1.0, offset) ** 0.5)
    assert np.allclose(explicit, reference_weiszfeld(x, w, 1e-6, 10_000), rtol=0, atol=1e-6)


@pytest.mark.parametrize("tolerance", [1e-7, 1e-12])
def test_integer_weights_equal_duplicated_rows(tolerance, rng):
    x = rng.normal(size=(6, 5))
    w = np.array([1, 3, 2, 1, 4, 2])
    gm = GeometricMedian(tolerance=tolerance)
    assert np.allclose(gm(x, weights=w.astype(float)), gm(np.repeat(x, w, axis=0)), rtol=1e-9, atol=1e-9)


def test_single_and_identical_rows(rng):
    row = rng.normal(size=(1, 6))
    assert np.allclose(GeometricMedian()(row), row[0])
    assert np.allclose(GeometricMedian()(np.repeat(row, 5, axis=0)), row[0])


def test_inputs_not_modified(rng):
    x = rng.normal(size=(6, 4))
    w = rng.uniform(0.5, 2.0, size=6)
    x0, w0 = x.copy(), w.copy()
    GeometricMedian()(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_min_inputs():
    assert GeometricMedian().min_inputs == 1
    with pytest.raises(IncompatibleStagesError):
        GeometricMedian()(np.zeros((0, 3)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"smoothing": 0.0}, {"smoothing": -1.0}, {"smoothing": math.nan}, {"smoothing": math.inf},
        {"smoothing": True}, {"smoothing": "1e-6"}, {"tolerance": 0.0}, {"tolerance": -1e-7},
        {"tolerance": math.nan}, {"max_iterations": 0}, {"max_iterations": 2.0}, {"max_iterations": True},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        GeometricMedian(**kwargs)


def test_name_and_repr():
    assert GeometricMedian.name == "geometric_median"
    assert repr(GeometricMedian(1e-3, 1e-9, 50)) == (
        "GeometricMedian(smoothing=0.001, tolerance=1e-09, max_iterations=50)"
    )
