import numpy as np
import pytest

from secfl.aggregators.krum import Krum
from secfl.aggregators.multi_krum import MultiKrum
from secfl.exceptions import ConfigurationError, IncompatibleStagesError

BYZFL_X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])


def slow_multi_krum(x, f, m=None, weights=None, neighbours="paper"):
    """Average of the m rows with the smallest Krum scores (stable order); weighted if weights."""
    n = len(x)
    k = n - f - 2 if neighbours == "paper" else n - f - 1
    m = n - f if m is None else m
    scores = []
    for i in range(n):
        dists = sorted(np.linalg.norm(x[i] - x[j]) ** 2 for j in range(n) if j != i)
        scores.append(sum(dists[:k]))
    chosen = sorted(range(n), key=lambda i: (scores[i], i))[:m]
    w = np.ones(n) if weights is None else weights
    total = np.zeros(x.shape[1])
    for i in chosen:
        total += w[i] * x[i]
    return total / sum(w[i] for i in chosen)


@pytest.mark.parametrize("n, d, f", [(3, 2, 0), (5, 4, 1), (7, 3, 2), (11, 10, 3), (20, 6, 5)])
@pytest.mark.parametrize("neighbours", ["paper", "byzfl"])
def test_matches_slow_reference_default_m(n, d, f, neighbours, rng):
    for _ in range(4):
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
        got = MultiKrum(f, neighbours=neighbours)(x)
        assert np.allclose(got, slow_multi_krum(x, f, neighbours=neighbours), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("m", [1, 2, 4, 9])
def test_matches_slow_reference_with_m_and_weights(m, rng):
    x = rng.normal(size=(9, 5))
    w = rng.uniform(0.2, 5.0, size=9)
    got = MultiKrum(2, selected=m)(x, weights=w)
    assert np.allclose(got, slow_multi_krum(x, 2, m, w), rtol=1e-12, atol=1e-12)
    # Weights matter whenever more than one row is averaged.
    if m > 1:
        assert not np.allclose(got, MultiKrum(2, selected=m)(x))


def test_paper_and_byzfl_neighbour_counts_differ():
    x = np.random.default_rng(67).normal(size=(7, 3))
    paper, byzfl = MultiKrum(1)(x), MultiKrum(1, neighbours="byzfl")(x)
    assert not np.allclose(paper, byzfl)
    assert np.allclose(byzfl, slow_multi_krum(x, 1, neighbours="byzfl"), rtol=1e-12)


def test_byzfl_known_answer():
    # ByzFL MultiKrum(1): n − f − 1 = 1 neighbour, m = n − f = 2; all three scores tie at 27.
    assert np.allclose(MultiKrum(1, neighbours="byzfl")(BYZFL_X), [2.5, 3.5, 4.5])


def test_one_selected_is_krum_and_all_selected_is_the_mean(rng):
    x = rng.normal(size=(8, 6))
    w = rng.uniform(0.5, 2.0, size=8)
    assert np.array_equal(MultiKrum(2, selected=1)(x), Krum(2)(x))
    assert np.allclose(MultiKrum(2, selected=8)(x, weights=w), w @ x / w.sum())


def test_far_byzantine_rows_are_excluded(rng):
    f = 3
    honest = rng.normal(size=(10, 15))
    byzantine = -1e5 + rng.normal(size=(f, 15))
    order = rng.permutation(13)
    x = np.vstack([honest, byzantine])[order]
    assert np.allclose(MultiKrum(f)(x), honest.mean(axis=0))


def test_inputs_never_modified(rng):
    x = rng.normal(size=(7, 4))
    w = rng.uniform(0.5, 2.0, size=7)
    x0, w0 = x.copy(), w.copy()
    MultiKrum(2)(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize(
    "rule, needed",
    [(MultiKrum(0), 3), (MultiKrum(2), 7), (MultiKrum(2, selected=9), 9), (MultiKrum(1, neighbours="byzfl"), 3)],
)
def test_min_inputs_enforced(rule, needed, rng):
    assert rule.min_inputs == needed
    with pytest.raises(IncompatibleStagesError, match=str(needed)):
        rule(rng.normal(size=(needed - 1, 3)))
    assert rule(rng.normal(size=(needed, 3))).shape == (3,)


@pytest.mark.parametrize("kwargs", [{"num_byzantine": -1}, {"num_byzantine": True}, {"selected": 0},
                                    {"selected": 2.0}, {"selected": True}, {"neighbours": "x"}])
def test_bad_configuration(kwargs):
    with pytest.raises(ConfigurationError):
        MultiKrum(**kwargs)


def test_bad_weights(rng):
    with pytest.raises(ConfigurationError):
        MultiKrum(1)(rng.normal(size=(5, 2)), weights=np.array([1.0, 1.0, 0.0, 1.0, 1.0]))


def test_repr_and_name():
    assert MultiKrum.name == "multi_krum"
    assert repr(MultiKrum(1, 3)) == "MultiKrum(num_byzantine=1, selected=3, neighbours='paper')"
