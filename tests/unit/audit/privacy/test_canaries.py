import numpy as np
import pytest

from secfl.audit.privacy.canaries import Canaries
from secfl.audit.privacy.run import GUESS_FRACTIONS, PrivacyAuditOptions, best_guess_audit
from secfl.exceptions import ConfigurationError


def test_canaries_are_a_mapping_of_slot_to_vector():
    c = Canaries(num_clients=50, num_canaries=20, dim=300, norm=2.5, seed=3)
    assert len(c) == 20 and len(set(c)) == 20 and all(0 <= cid < 50 for cid in c)
    assert 3 <= c.included.sum() <= 17
    for i, cid in enumerate(c.slots):
        v = c[int(cid)]
        assert v.shape == (300,)
        assert np.linalg.norm(v) == pytest.approx(2.5 if c.included[i] else 0.0)
    ordinary = next(cid for cid in range(50) if cid not in set(c.slots.tolist()))
    with pytest.raises(KeyError):
        c[ordinary]


def test_canaries_are_reproducible_and_seed_dependent():
    a, b = (Canaries(num_clients=50, num_canaries=20, dim=300, norm=1.0, seed=s) for s in (3, 3))
    other = Canaries(num_clients=50, num_canaries=20, dim=300, norm=1.0, seed=4)
    assert np.array_equal(a.slots, b.slots) and np.array_equal(a.included, b.included)
    assert np.array_equal(a.direction(5), b.direction(5))
    assert not np.array_equal(a.direction(5), other.direction(5))


def test_scores_project_the_released_sum_on_each_direction():
    c = Canaries(num_clients=10, num_canaries=4, dim=1000, norm=1.0, seed=0)
    released = 3.0 * c.direction(2)
    scores = c.scores(released)
    assert scores[2] == pytest.approx(3.0) and np.all(np.abs(np.delete(scores, 2)) < 0.5)
    with pytest.raises(ConfigurationError, match="shape"):
        c.scores(np.zeros(999))


@pytest.mark.parametrize("kwargs, match", [
    ({"num_canaries": 10}, "no ordinary client"),
    ({"num_canaries": 0}, "num_canaries"),
    ({"norm": 0.0}, "norm"),
    ({"norm": float("nan")}, "norm"),
    ({"dim": True}, "dim"),
    ({"seed": -1}, "seed"),
])
def test_bad_canary_settings_are_refused(kwargs, match):
    args = {"num_clients": 10, "num_canaries": 4, "dim": 5, "norm": 1.0, "seed": 0, **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        Canaries(**args)


def test_best_guess_audit_reaches_its_ceiling_on_perfect_scores_and_zero_on_noise():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    perfect = best_guess_audit(included.astype(float) + rng.normal(0, 0.01, 1000), included, delta=1e-5,
                               confidence=0.95, claimed_epsilon=1.0)
    assert perfect["correct"] == perfect["guesses"] and perfect["epsilon_lower_bound"] > 2.5
    assert perfect["epsilon_lower_bound"] == pytest.approx(perfect["audit_ceiling"])
    assert perfect["failed"] and perfect["tests"] == 2 * len(GUESS_FRACTIONS)
    assert perfect["corrected_confidence"] == pytest.approx(1 - 0.05 / perfect["tests"])
    noise = best_guess_audit(rng.normal(size=1000), included, delta=1e-5, confidence=0.95, claimed_epsilon=1.0)
    assert noise["epsilon_lower_bound"] < 0.3 and not noise["failed"]
    unclaimed = best_guess_audit(included.astype(float), included, delta=1e-5, confidence=0.95,
                                 claimed_epsilon=None)
    assert not unclaimed["failed"]


@pytest.mark.parametrize("kwargs", [{"shadows": 1}, {"canaries": -1}, {"confidence": 1.0}, {"mia_examples": 1},
                                    {"inversion_iterations": 0}, {"seed": True}])
def test_bad_audit_options_are_refused(kwargs):
    with pytest.raises(ConfigurationError):
        PrivacyAuditOptions(**kwargs)
