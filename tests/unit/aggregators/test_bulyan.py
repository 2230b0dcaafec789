import itertools

import numpy as np
import pytest

from secfl.aggregators.bulyan import Bulyan
from secfl.exceptions import ConfigurationError, IncompatibleStagesError


def slow_bulyan(x, f):
    """El Mhamdi et al.: θ = n − 2f rounds of Krum on the remaining rows, then per coordinate the
    mean of the β = θ − 2f selected values closest to their median. Krum uses max(|R| − f − 2, 1)
    neighbours (the paper's count is < 1 in the last rounds when f <= 1)."""
    n, d = x.shape
    dist = {}
    for i, j in itertools.combinations(range(n), 2):
        dist[i, j] = dist[j, i] = np.linalg.norm(x[i] - x[j]) ** 2
    remaining, selected = list(range(n)), []
    for _ in range(n - 2 * f):
        if len(remaining) == 1:
            best = remaining[0]
        else:
            k = max(len(remaining) - f - 2, 1)
            scores = {i: sum(sorted(dist[i, j] for j in remaining if j != i)[:k]) for i in remaining}
            best = min(remaining, key=lambda i: (scores[i], sum(dist[i, j] for j in remaining if j != i), i))
        selected.append(best)
        remaining.remove(best)
    beta = len(selected) - 2 * f
    out = np.zeros(d)
    for c in range(d):
        values = [x[i, c] for i in selected]
        median = np.median(values)
        closest = sorted(values, key=lambda v: abs(v - median))[:beta]
        out[c] = sum(closest) / beta
    return out


@pytest.mark.parametrize("n, d, f", [(3, 4, 0), (7, 5, 1), (8, 3, 1), (11, 6, 2), (12, 20, 2), (15, 4, 3), (19, 3, 4)])
def test_matches_slow_reference(n, d, f, rng):
    for _ in range(4):
        x = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=(n, 1))
        assert np.allclose(Bulyan(f)(x), slow_bulyan(x, f), rtol=1e-12, atol=1e-12)


def test_f_zero_is_the_mean(rng):
    x = rng.normal(size=(6, 5))
    assert np.allclose(Bulyan(0)(x), x.mean(axis=0))


def test_far_byzantine_rows_have_no_influence(rng):
    for f in (1, 2, 3):
        honest = rng.normal(size=(3 * f + 3, 8))
        byzantine = 1e8 * (1.0 + rng.random(size=(f, 8)))
        x = np.vstack([honest, byzantine])[rng.permutation(4 * f + 3)]
        out = Bulyan(f)(x)
        assert np.all(out >= honest.min(axis=0)) and np.all(out <= honest.max(axis=0))
        assert np.allclose(out, slow_bulyan(x, f), rtol=1e-12, atol=1e-12)
        # The rule never selects a Byzantine row.
        chosen = Bulyan(f)._select(np.array([[np.linalg.norm(a - b) ** 2 for b in x] for a in x]), len(x) - 2 * f)
        assert np.all(np.abs(x[chosen]) < 1e7)


def test_distance_tie_resolved_to_the_smaller_window():
    # f = 1, n = 7: θ = 5, β = 3. Rows 0-4 (generic first coordinate) are selected; rows 5 and 6
    # are far away (the last Krum round has k = 1 and ties a core row with a far row: the lower
    # index, a core row, wins). The second coordinates of the selected rows are {0, 1, 2, 4, 5}/1024:
    # median 2/1024, and 0 and 4/1024 tie at distance 2/1024.
    s = 2.0**-10
    cores = np.array([[0.11, 4 * s], [0.42, 0 * s], [0.27, 2 * s], [0.05, 5 * s], [0.33, 1 * s]])
    far = np.array([[40.0, 3 * s], [-70.0, 7 * s]])
    out = Bulyan(1)(np.vstack([cores, far]))
    assert out[1] == s  # mean of {0, 1, 2}/1024 (the window of smaller values), not of {1, 2, 4}/1024
    for perm in itertools.permutations(range(5)):
        assert np.array_equal(Bulyan(1)(np.vstack([cores[list(perm)], far])), out)


def test_weights_ignored_and_inputs_untouched(rng):
    x = rng.normal(size=(11, 4))
    w = rng.uniform(0.5, 2.0, size=11)
    x0, w0 = x.copy(), w.copy()
    assert np.array_equal(Bulyan(2)(x, weights=w), Bulyan(2)(x))
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("f, needed", [(0, 3), (1, 7), (3, 15)])
def test_min_inputs_is_4f_plus_3(f, needed, rng):
    rule = Bulyan(f)
    assert rule.min_inputs == needed
    with pytest.raises(IncompatibleStagesError, match=str(needed)):
        rule(rng.normal(size=(needed - 1, 3)))
    assert rule(rng.normal(size=(needed, 3))).shape == (3,)


@pytest.mark.parametrize("f", [-1, 1.5, True, None])
def test_bad_f(f):
    with pytest.raises(ConfigurationError):
        Bulyan(f)


def test_repr_and_name():
    assert Bulyan.name == "bulyan"
    assert repr(Bulyan(2)) == "Bulyan(num_byzantine=2)"
