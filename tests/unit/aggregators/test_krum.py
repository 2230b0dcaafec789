import numpy as np
import pytest

from secfl.aggregators.krum import Krum
from secfl.exceptions import ConfigurationError, IncompatibleStagesError

BYZFL_X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def slow_krum(x, f, neighbours="paper"):
    """Blanchard et al.: score = sum of the n − f − 2 smallest ||x_i − x_j||², j != i.

    ByzFL ("byzfl"): the mean of the n − f − 1 smallest."""
    n = len(x)
    k = n - f - 2 if neighbours == "paper" else n - f - 1
    scores = []
    for i in range(n):
        dists = sorted(np.linalg.norm(x[i] - x[j]) ** 2 for j in range(n) if j != i)
        chosen = dists[:k]
        scores.append(sum(chosen) if neighbours == "paper" else (np.mean(chosen) if chosen else 0.0))
    best = min(range(n), key=lambda i: (scores[i], i))
    return x[best]


@pytest.mark.parametrize("n, d, f", [(3, 2, 0), (5, 4, 1), (7, 3, 2), (11, 10, 3), (20, 6, 5), (9, 50, 1)])
@pytest.mark.parametrize("neighbours", ["paper", "byzfl"])
def test_matches_slow_reference(n, d, f, neighbours, rng):
    for _ in range(5):
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
        assert np.array_equal(Krum(f, neighbours=neighbours)(x), slow_krum(x, f, neighbours))


def test_paper_and_byzfl_neighbour_counts_differ():
    x = np.random.default_rng(0).normal(size=(7, 3))
    paper, byzfl = Krum(1)(x), Krum(1, neighbours="byzfl")(x)
    assert not np.array_equal(paper, byzfl)
    assert np.array_equal(paper, slow_krum(x, 1, "paper"))
    assert np.array_equal(byzfl, slow_krum(x, 1, "byzfl"))


def test_byzfl_known_answer():
    assert np.array_equal(Krum(1, neighbours="byzfl")(BYZFL_X), [1.0, 2.0, 3.0])


def test_fixed_neighbour_count():
    x = np.array([[0.0], [1.0], [3.0], [7.0], [7.5]])
    # k = 1: the closest pair (3 and 4) ties; the lower index wins.
    assert np.array_equal(Krum(0, neighbours=1)(x), [7.0])
    # k = 3: scores 59, 41, 29, 52.25, 62.75: the middle row wins.
    assert np.array_equal(Krum(0, neighbours=3)(x), [3.0])


def test_ties_go_to_the_lowest_index():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])  # f = 1, k = 2: rows 1, 2, 3 all score 2
    assert np.array_equal(Krum(1)(x), [1.0])
    assert np.array_equal(Krum(1)(x[[3, 2, 1, 0, 4]]), [3.0])


def test_far_byzantine_rows_are_never_selected(rng):
    for f in (1, 2, 4):
        honest = rng.normal(size=(2 * f + 3, 20))
        byzantine = 1e6 + rng.normal(size=(f, 20))
        x = np.vstack([byzantine, honest])[rng.permutation(3 * f + 3)]
        out = Krum(f)(x)
        assert any(np.array_equal(out, h) for h in honest)


def test_weights_are_ignored_and_inputs_untouched(rng):
    x = rng.normal(size=(7, 4))
    w = rng.uniform(0.5, 2.0, size=7)
    x0, w0 = x.copy(), w.copy()
    assert np.array_equal(Krum(2)(x, weights=w), Krum(2)(x))
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_output_is_a_copy(rng):
    x = rng.normal(size=(5, 3))
    out = Krum(1)(x)
    out[:] = 99.0
    assert not np.any(x == 99.0)


def test_float32_input(rng):
    x = rng.normal(size=(7, 5)).astype(np.float32)
    out = Krum(2)(x)
    assert out.dtype == np.float64
    assert np.array_equal(out, slow_krum(x.astype(np.float64), 2))


@pytest.mark.parametrize(
    "rule, needed",
    [
        (Krum(0), 3),
        (Krum(2), 7),
        (Krum(2, neighbours="byzfl"), 5),
        (Krum(1, neighbours=6), 7),
        (Krum(3, neighbours=2), 7),
    ],
)
def test_min_inputs_enforced(rule, needed, rng):
    assert rule.min_inputs == needed
    with pytest.raises(IncompatibleStagesError, match=str(needed)):
        rule(rng.normal(size=(needed - 1, 3)))
    assert rule(rng.normal(size=(needed, 3))).shape == (3,)


@pytest.mark.parametrize("f", [-1, 1.5, True, "2"])
def test_bad_f(f):
    with pytest.raises(ConfigurationError):
        Krum(f)


@pytest.mark.parametrize("neighbours", ["blanchard", 0, -2, 1.5, True, None])
def test_bad_neighbours(neighbours):
    with pytest.raises(ConfigurationError):
        Krum(1, neighbours=neighbours)


def test_repr_and_name():
    assert Krum.name == "krum"
    assert repr(Krum(2)) == "Krum(num_byzantine=2, neighbours='paper')"
