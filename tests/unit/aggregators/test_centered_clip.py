import math

import numpy as np
import pytest

from secfl.aggregators.centered_clip import CenteredClip
from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def reference_weighted_median(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per coordinate, a Python loop: sort (value, weight) pairs, walk the cumulative weight."""
    n, d = x.shape
    out = []
    total = float(sum(w))
    for j in range(d):
        pairs = sorted((float(x[i, j]), float(w[i])) for i in range(n))
        cumulative, low, high = 0.0, None, None
        for value, weight in pairs:
            cumulative += weight
            if low is None and cumulative >= total / 2:
                low = value
            if high is None and cumulative > total / 2:
                high = value
        out.append((low + high) / 2)
    return np.array(out)


def reference_centered_clip(x, w, radius, iterations, start):
    """The update written out with a loop over rows."""
    n, d = x.shape
    v = reference_weighted_median(x, w) if start == "median" else np.zeros(d)
    for _ in range(iterations):
        step = np.zeros(d)
        for i in range(n):
            diff = x[i] - v
            norm = float(np.linalg.norm(diff))
            step += w[i] * diff * (min(1.0, radius / norm) if norm > 0 else 1.0)
        v = v + step / sum(w)
    return v


def byzfl_centered_clipping(x, tau=100.0, L=1):
    """ByzFL 0.0.11 ``CenteredClipping()`` on a fresh instance (m = 0), numpy path, transcribed."""
    v = np.zeros_like(x[0])
    for _ in range(L):
        differences = x - v
        clip_factor = tau / np.linalg.norm(differences, axis=1)
        clip_factor = np.minimum(np.ones_like(clip_factor), clip_factor)
        differences = np.multiply(differences, clip_factor.reshape(-1, 1))
        v = np.add(v, np.mean(differences, axis=0))
    return v


@pytest.mark.parametrize("n, d", [(1, 3), (4, 5), (7, 3), (10, 8), (30, 4)])
@pytest.mark.parametrize("start", ["median", "zero"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_row_loop_reference(n, d, start, weighted, rng):
    x = rng.normal(scale=5.0, size=(n, d)) + rng.normal(size=d)
    if n > 4:
        x[: n // 4] *= 40.0  # some rows far enough to be clipped
    w = rng.uniform(0.5, 3.0, size=n) if weighted else np.ones(n)
    for radius, iterations in [(1.0, 1), (10.0, 3), (1e6, 2)]:
        out = CenteredClip(radius, iterations, start)(x, weights=w if weighted else None)
        assert np.allclose(out, reference_centered_clip(x, w, radius, iterations, start), rtol=1e-9, atol=1e-9)


def test_ties_and_even_n_median_start(rng):
    x = np.round(rng.normal(scale=2.0, size=(8, 6)))
    for w in (np.ones(8), np.array([1.0, 2, 1, 3, 1, 1, 2, 1])):
        out = CenteredClip(3.0, 2, "median")(x, weights=w)
        assert np.allclose(out, reference_centered_clip(x, w, 3.0, 2, "median"), rtol=1e-9, atol=1e-9)


def test_tiny_radius_returns_the_start(rng):
    x = np.round(rng.normal(scale=3.0, size=(6, 9)))
    assert np.allclose(CenteredClip(1e-12, 1)(x), np.median(x, axis=0), atol=1e-10)
    w = np.array([1, 4, 2, 1, 1, 3])
    assert np.allclose(
        CenteredClip(1e-12, 1)(x, weights=w.astype(float)), np.median(np.repeat(x, w, axis=0), axis=0), atol=1e-10
    )


@pytest.mark.parametrize("scale", [0.1, 10.0, 100.0, 1e4])
def test_equals_byzfl_fresh_instance(scale, rng):
    x = rng.normal(scale=scale, size=(9, 7))
    assert np.allclose(CenteredClip(100, 1, "zero")(x), byzfl_centered_clipping(x), rtol=1e-12, atol=1e-12)


def test_byzfl_known_answer():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    assert np.allclose(CenteredClip(radius=100, iterations=1, start="zero")(x), [4.0, 5.0, 6.0])


def test_stateless(rng):
    x = rng.normal(scale=50.0, size=(5, 4))
    rule = CenteredClip(10.0, 1, "zero")
    assert np.array_equal(rule(x), rule(x))  # ByzFL's CenteredClipping would restart from its last output


@pytest.mark.parametrize("n, f, iterations", [(5, 2, 1), (10, 3, 3), (30, 6, 5)])
def test_byzantine_rows_move_the_centre_by_at_most_radius_f_over_n_per_iteration(n, f, iterations, rng):
    radius = 2.0
    honest_point = rng.normal(size=12)
    x = np.vstack([np.tile(honest_point, (n - f, 1)), np.full((f, 12), 1e6)])
    one = CenteredClip(radius, 1)(x)
    direction = (1e6 - honest_point) / np.linalg.norm(1e6 - honest_point)
    assert np.allclose(one, honest_point + radius * f / n * direction)
    many = CenteredClip(radius, iterations)(x)
    assert np.linalg.norm(many - honest_point) <= iterations * radius * f / n + 1e-9


def test_byzantine_contribution_per_iteration_is_bounded(rng):
    n, f, radius = 12, 4, 1.5
    honest = rng.normal(size=(n - f, 6))
    x = np.vstack([honest, rng.normal(scale=1e6, size=(f, 6))])
    v1 = CenteredClip(radius, 1, "zero")(x)
    honest_part = sum(h * min(1.0, radius / np.linalg.norm(h)) for h in honest) / n
    assert np.linalg.norm(v1 - honest_part) <= radius * f / n + 1e-12


@pytest.mark.parametrize("start", ["median", "zero"])
@pytest.mark.parametrize("w", [[1, 3, 2, 1, 4], [2, 2, 1, 1, 2]])  # odd and even total weight
def test_integer_weights_equal_duplicated_rows(start, w, rng):
    x = np.round(rng.normal(scale=4.0, size=(5, 7)), 1)
    w = np.array(w)
    rule = CenteredClip(2.0, 3, start)
    assert np.allclose(rule(x, weights=w.astype(float)), rule(np.repeat(x, w, axis=0)), rtol=1e-10, atol=1e-10)


def test_rows_at_the_centre_do_not_give_nan():
    x = np.tile([1.5, -2.0, 0.25], (4, 1))
    out = CenteredClip()(x)
    assert np.all(np.isfinite(out)) and np.allclose(out, x[0])
    assert np.allclose(CenteredClip(start="zero")(np.zeros((3, 2))), 0.0)


def test_chunked_weighted_median_across_chunks(rng):
    x = rng.normal(size=(3, 200_000))
    w = np.array([1.0, 1.0, 3.0])
    assert np.allclose(CenteredClip(1e-12, 1)(x, weights=w), x[2], atol=1e-10)


def test_inputs_not_modified(rng):
    x = rng.normal(size=(6, 4))
    w = rng.uniform(0.5, 2.0, size=6)
    x0, w0 = x.copy(), w.copy()
    CenteredClip(0.5, 3)(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_min_inputs():
    assert CenteredClip().min_inputs == 1
    with pytest.raises(IncompatibleStagesError):
        CenteredClip()(np.zeros((0, 3)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"radius": 0.0}, {"radius": -1.0}, {"radius": math.nan}, {"radius": math.inf}, {"radius": True},
        {"radius": "10"}, {"iterations": 0}, {"iterations": 1.0}, {"iterations": True},
        {"start": "mean"}, {"start": None},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        CenteredClip(**kwargs)


def test_name_and_repr():
    assert CenteredClip.name == "centered_clip"
    assert repr(CenteredClip(100, 1, "zero")) == "CenteredClip(radius=100.0, iterations=1, start='zero')"
