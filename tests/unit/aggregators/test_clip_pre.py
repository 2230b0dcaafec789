import math

import numpy as np
import pytest

from secfl.aggregators.clip import AdaptiveClip, StaticClip
from secfl.exceptions import ConfigurationError, IncompatibleStagesError

X3 = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def reference_static_clip(x: np.ndarray, c: float) -> np.ndarray:
    """ByzFL ``Clipping(c)``, one row at a time, on a copy."""
    out = x.copy()
    for i in range(len(out)):
        norm = np.linalg.norm(out[i])
        if norm > c:
            out[i] = out[i] * (c / norm)
    return out


def reference_arc(x: np.ndarray, f: int) -> np.ndarray:
    """ByzFL ``ARC(f)`` transcribed (Python list sort of (norm, index), clip the top k), on a copy."""
    out = x.copy()
    magnitudes = sorted(((np.linalg.norm(row), i) for i, row in enumerate(out)), key=lambda m: m[0])
    n = len(out)
    k = int((2 * f / n) * (n - f))
    threshold = magnitudes[n - k - 1][0]
    for _, i in magnitudes[n - k :]:
        norm = np.linalg.norm(out[i])
        if norm > threshold:
            out[i] = out[i] * (threshold / norm)
    return out


@pytest.mark.parametrize("n, d", [(1, 4), (3, 3), (6, 5), (10, 2), (30, 8)])
@pytest.mark.parametrize("c", [0.5, 2.0, 1e3])
def test_static_clip_matches_row_loop(n, d, c, rng):
    x = rng.normal(size=(n, d)) * rng.uniform(0.01, 5.0, size=(n, 1))
    assert np.allclose(StaticClip(c)(x), reference_static_clip(x, c), rtol=1e-12, atol=1e-14)


def test_static_clip_byzfl_known_answer():
    expected = [
        [0.53452248, 1.06904497, 1.60356745],
        [0.91168461, 1.13960576, 1.36752692],
        [1.00514142, 1.14873305, 1.29232469],
    ]
    assert np.allclose(StaticClip(2.0)(X3), expected, rtol=1e-7)


def test_static_clip_bounds_norms_and_keeps_direction_and_order(rng):
    x = rng.normal(scale=3.0, size=(8, 6))
    x[2] = 0.0
    out = StaticClip(1.0)(x)
    norms = np.linalg.norm(out, axis=1)
    assert np.all(norms <= 1.0 + 1e-12) and np.array_equal(out[2], np.zeros(6))
    small = np.linalg.norm(x, axis=1) <= 1.0
    assert np.array_equal(out[small], x[small])
    cos = np.einsum("ij,ij->i", out, x)[~small] / (norms[~small] * np.linalg.norm(x[~small], axis=1))
    assert np.allclose(cos, 1.0)


@pytest.mark.parametrize("n, f", [(1, 0), (3, 1), (4, 1), (5, 2), (6, 2), (7, 3), (10, 4), (10, 9), (30, 6), (31, 15)])
@pytest.mark.parametrize("ties", [False, True])
def test_adaptive_clip_matches_byzfl_transcription(n, f, ties, rng):
    x = rng.normal(size=(n, 5)) * rng.uniform(0.1, 10.0, size=(n, 1))
    if ties:  # equal norms: sign flips and permutations of a few rows, and zero rows
        base = rng.normal(size=5)
        for i in range(0, n, 2):
            x[i] = rng.permutation(base) * rng.choice([-1.0, 1.0], size=5)
        x[n // 3] = 0.0
    assert np.allclose(AdaptiveClip(f)(x), reference_arc(x, f), rtol=1e-12, atol=1e-14)


def test_adaptive_clip_byzfl_known_answer():
    expected = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [4.41004009, 5.04004582, 5.67005155]]
    assert np.allclose(AdaptiveClip(1)(X3), expected, rtol=1e-7)


@pytest.mark.parametrize("n, f", [(10, 2), (30, 6), (31, 15), (242, 33)])
def test_adaptive_clip_clips_exactly_the_k_largest_to_the_next_norm(n, f, rng):
    x = rng.normal(size=(n, 4)) * rng.uniform(0.1, 10.0, size=(n, 1))
    k = int((2 * f / n) * (n - f))
    assert AdaptiveClip(f).num_clipped(n) == k
    norms = np.linalg.norm(x, axis=1)
    threshold = np.sort(norms)[n - k - 1]
    out = AdaptiveClip(f)(x)
    changed = np.any(out != x, axis=1)
    assert changed.sum() == k and np.all(norms[changed] > threshold)
    assert np.allclose(np.linalg.norm(out[changed], axis=1), threshold)


def test_adaptive_clip_uses_byzfl_float_count():
    assert AdaptiveClip(33).num_clipped(242) == 56  # the exact floor of 2*33*209/242 is 57
    assert AdaptiveClip(1).num_clipped(3) == 1
    assert AdaptiveClip(0).num_clipped(10) == 0


def test_adaptive_clip_f0_is_a_copy(rng):
    x = rng.normal(size=(5, 3))
    out = AdaptiveClip(0)(x)
    assert np.array_equal(out, x) and not np.shares_memory(out, x)


@pytest.mark.parametrize("rule", [StaticClip(0.3), AdaptiveClip(2), AdaptiveClip(0)])
def test_inputs_never_modified_and_output_is_new(rule, rng):
    x = rng.normal(size=(7, 4))
    w = rng.uniform(0.5, 2.0, size=7)
    x0, w0 = x.copy(), w.copy()
    out = rule(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)
    assert out.shape == x.shape and out.dtype == np.float64 and not np.shares_memory(out, x)
    assert np.array_equal(out, rule(x))  # weights are not used


def test_pre_aggregator_attributes():
    assert StaticClip.pre is True and AdaptiveClip.pre is True
    assert StaticClip.name == "static_clip" and AdaptiveClip.name == "adaptive_clip"
    assert StaticClip(1.0).min_inputs == 1 and AdaptiveClip(3).min_inputs == 4
    assert repr(StaticClip(2)) == "StaticClip(norm=2.0)" and repr(AdaptiveClip(3)) == "AdaptiveClip(num_byzantine=3)"


def test_min_inputs_enforced(rng):
    with pytest.raises(IncompatibleStagesError, match="4"):
        AdaptiveClip(3)(rng.normal(size=(3, 2)))
    with pytest.raises(IncompatibleStagesError):
        StaticClip(1.0)(np.zeros((0, 2)))


@pytest.mark.parametrize("norm", [0.0, -1.0, math.nan, math.inf, True, "2", None])
def test_static_clip_bad_norm(norm):
    with pytest.raises(ConfigurationError):
        StaticClip(norm)


@pytest.mark.parametrize("f", [-1, 1.5, True, "1", None])
def test_adaptive_clip_bad_f(f):
    with pytest.raises(ConfigurationError):
        AdaptiveClip(f)
