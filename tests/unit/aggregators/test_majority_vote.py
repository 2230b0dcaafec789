import numpy as np
import pytest

from secfl.aggregators.majority_vote import MajorityVote
from secfl.exceptions import IncompatibleStagesError


def reference_vote(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per coordinate: add up w_i for a positive value, subtract it for a negative one."""
    n, d = x.shape
    out = []
    for j in range(d):
        tally = 0.0
        for i in range(n):
            if x[i, j] > 0:
                tally += w[i]
            elif x[i, j] < 0:
                tally -= w[i]
        out.append(1.0 if tally > 0 else -1.0 if tally < 0 else 0.0)
    return np.array(out)


@pytest.mark.parametrize("n, d", [(1, 5), (2, 30), (3, 7), (4, 40), (9, 11), (30, 6)])
@pytest.mark.parametrize("weights", ["none", "integer", "real"])
def test_matches_per_coordinate_reference(n, d, weights, rng):
    x = rng.integers(-2, 3, size=(n, d)).astype(float)  # signs with zeros, ties for even n
    w = {"none": np.ones(n), "integer": rng.integers(1, 4, size=n).astype(float),
         "real": rng.uniform(0.5, 2.0, size=n)}[weights]
    out = MajorityVote()(x, weights=None if weights == "none" else w)
    assert np.array_equal(out, reference_vote(x, w))


def test_known_answer_and_ties():
    x = np.array([[1.0, -1.0, 0.0, 2.0, 1.0], [2.0, -3.0, 0.0, -1.0, -1.0], [-1.0, 5.0, 0.0, 3.0, 0.0]])
    assert np.array_equal(MajorityVote()(x), [1.0, -1.0, 0.0, 1.0, 0.0])
    assert np.array_equal(MajorityVote()(np.array([[1.0], [-1.0]])), [0.0])
    weighted_tie = MajorityVote()(np.array([[1.0], [-1.0], [-1.0]]), weights=np.array([2.0, 1.0, 1.0]))
    assert np.array_equal(weighted_tie, [0.0])
    assert not np.any(np.signbit(MajorityVote()(np.array([[-1.0, 1.0, -0.0], [1.0, -1.0, -0.0]]))))  # no -0.0


def test_magnitudes_do_not_matter(rng):
    x = rng.normal(size=(7, 20))
    scaled = x * rng.uniform(1e-3, 1e6, size=(7, 1))
    assert np.array_equal(MajorityVote()(x), MajorityVote()(scaled))


def test_minority_of_byzantine_votes_cannot_flip_a_unanimous_honest_vote(rng):
    honest = np.abs(rng.normal(size=(6, 10))) * np.sign(rng.normal(size=10))
    x = np.vstack([honest, -1e6 * np.sign(honest[:5])])
    assert np.array_equal(MajorityVote()(x), np.sign(honest[0]))


@pytest.mark.parametrize("w", [[1, 3, 2, 1, 4], [2, 2, 1, 1, 2], [1, 1, 1, 1, 4]])
def test_integer_weights_equal_duplicated_rows(w, rng):
    x = rng.integers(-1, 2, size=(5, 50)).astype(float)
    w = np.array(w)
    assert np.array_equal(MajorityVote()(x, weights=w.astype(float)), MajorityVote()(np.repeat(x, w, axis=0)))


def test_many_coordinates_across_chunks(rng):
    x = rng.normal(size=(30, 40_000))
    w = rng.integers(1, 5, size=30).astype(float)
    assert np.array_equal(MajorityVote()(x, weights=w), np.sign(w @ np.sign(x)))


def test_output_dtype_and_inputs_not_modified(rng):
    x = rng.normal(size=(5, 8))
    w = rng.uniform(0.5, 2.0, size=5)
    x0, w0 = x.copy(), w.copy()
    out = MajorityVote()(x, weights=w)
    assert out.dtype == np.float64 and out.shape == (8,) and set(np.unique(out)) <= {-1.0, 0.0, 1.0}
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_min_inputs():
    assert MajorityVote().min_inputs == 1
    with pytest.raises(IncompatibleStagesError):
        MajorityVote()(np.zeros((0, 3)))


def test_name_and_repr():
    assert MajorityVote.name == "majority_vote"
    assert repr(MajorityVote()) == "MajorityVote()"
