import math

import numpy as np
import pytest
from scipy import stats

from secfl.audit.privacy.epsilon import (
    AuditResult,
    PrivacyAuditError,
    audit_canaries,
    canary_guesses,
    check_claim,
    gdp_epsilon,
    one_run_lower_bound,
    one_run_p_value,
    one_shot_epsilon,
)
from secfl.exceptions import ConfigurationError, SecflError
from secfl.privacy.accountant import Accountant

DELTA = 1e-5


def _canary_run(m: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each canary is its own Gaussian mechanism: score = b_i + N(0, sigma^2), b_i ~ Bernoulli(1/2)."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    return included + rng.normal(0.0, sigma, m), included


# (1) chance accuracy certifies nothing
@pytest.mark.parametrize("delta", [0.0, DELTA])
def test_chance_accuracy_gives_zero(delta):
    assert one_run_lower_bound(1000, 100, 50, delta=delta) == 0.0
    assert one_run_lower_bound(1000, 100, 0, delta=delta) == 0.0
    assert one_run_lower_bound(1000, 0, 0, delta=delta) == 0.0


# (2) monotone in accuracy, and the hand-computed delta = 0 values
def test_bound_increases_with_accuracy():
    bounds = [one_run_lower_bound(1000, 100, v, delta=DELTA) for v in range(55, 101, 5)]
    assert all(a < b for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("r", [10, 100, 1000])
def test_all_correct_delta_zero_matches_closed_form(r):
    # P[Binomial(r, q) >= r] = q^r = 0.05  =>  q = 0.05^(1/r), eps = logit(q)
    q = 0.05 ** (1 / r)
    expected = math.log(q / (1 - q))
    got = one_run_lower_bound(10 * r, r, r, delta=0.0, confidence=0.95)
    assert got == pytest.approx(expected, abs=1e-6)
    assert stats.binom.sf(r - 1, r, math.exp(got) / (1 + math.exp(got))) == pytest.approx(0.05, rel=1e-4)


def test_delta_zero_bound_sits_where_the_binomial_tail_hits_the_level():
    eps = one_run_lower_bound(1000, 100, 90, delta=0.0)
    tail = lambda e: stats.binom.sf(89, 100, math.exp(e) / (1 + math.exp(e)))  # noqa: E731
    assert tail(eps) <= 0.05 < tail(eps + 1e-4)


def test_reference_numbers_and_delta_term():
    # docs/reference privacy.md §4.2 [measured]: m=1000, r=100 -> 0.47, 1.63, 3.47; m=1e4, r=1000, delta=0 -> 5.81
    assert one_run_lower_bound(1000, 100, 70, delta=DELTA) == pytest.approx(0.47, abs=0.01)
    assert one_run_lower_bound(1000, 100, 90, delta=DELTA) == pytest.approx(1.63, abs=0.01)
    assert one_run_lower_bound(1000, 100, 100, delta=DELTA) == pytest.approx(3.47, abs=0.01)
    assert one_run_lower_bound(10_000, 1000, 1000, delta=0.0) == pytest.approx(5.81, abs=0.01)
    # the delta term only weakens the bound, and adds alpha * 2 m delta to the p-value
    assert one_run_lower_bound(10_000, 1000, 1000, delta=DELTA) < one_run_lower_bound(10_000, 1000, 1000, delta=0.0)
    p0 = one_run_p_value(1000, 100, 90, epsilon=1.0, delta=0.0)
    p1 = one_run_p_value(1000, 100, 90, epsilon=1.0, delta=DELTA)
    q = math.exp(1) / (1 + math.exp(1))
    alpha = max((stats.binom.cdf(89, 100, q) - stats.binom.cdf(89 - i, 100, q)) / i for i in range(1, 91))
    assert p1 == pytest.approx(p0 + alpha * 2 * 1000 * DELTA, rel=1e-9)


def test_higher_confidence_gives_a_lower_bound():
    assert one_run_lower_bound(1000, 100, 90, delta=DELTA, confidence=0.99) < one_run_lower_bound(
        1000, 100, 90, delta=DELTA, confidence=0.95)


def test_canary_guesses_counts():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.5, 0.7])
    included = np.array([True, False, False, False, True, True])
    # top 2: idx 0 (in, ok), 2 (out, wrong); bottom 2: idx 1 (out, ok), 3 (out, ok)
    assert canary_guesses(scores, included, 2, 2) == (4, 3)
    assert canary_guesses(scores, included, 0, 0) == (0, 0)
    assert canary_guesses(scores, included.astype(int), 6, 0) == (6, 3)


# (3) the audit never beats the truth on a real Gaussian mechanism
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_lower_bound_respects_the_gaussian_mechanism(sigma):
    theory = gdp_epsilon(1 / sigma, DELTA)
    for seed in range(3):
        scores, included = _canary_run(1000, sigma, seed)
        result = audit_canaries(scores, included, k_pos=50, k_neg=50, delta=DELTA, claimed_epsilon=theory)
        assert isinstance(result, AuditResult)
        assert 0.0 <= result.epsilon_lower_bound <= min(theory, result.epsilon_ceiling)
    if sigma == 1.0:
        assert result.epsilon_lower_bound > 0.5  # the audit does detect leakage (about 1.2-1.9 here)


def test_gdp_epsilon_matches_the_accountant():
    for sigma in (1.0, 2.0):
        pld = Accountant().epsilon(noise_multiplier=sigma, sample_rate=1.0, rounds=1, delta=DELTA)
        assert gdp_epsilon(1 / sigma, DELTA) == pytest.approx(pld, rel=2e-3)


# (4) a broken mechanism is caught
def test_broken_noise_is_flagged():
    claimed = gdp_epsilon(1 / 5.0, DELTA)  # the claim: sigma = 5, eps about 0.73
    scores, included = _canary_run(1000, 0.01, seed=0)  # the bug: noise nearly removed
    r, v = canary_guesses(scores, included, 50, 50)
    lower = one_run_lower_bound(1000, r, v, delta=DELTA)
    assert v == r == 100 and lower > claimed
    with pytest.raises(PrivacyAuditError, match=r"3\.46.*0\.72") as info:
        check_claim(claimed, lower)
    assert isinstance(info.value, SecflError)
    with pytest.raises(PrivacyAuditError):
        audit_canaries(scores, included, k_pos=50, k_neg=50, delta=DELTA, claimed_epsilon=claimed)
    check_claim(claimed, 0.5)  # a bound under the claim passes
    check_claim(claimed, claimed)


# (5) one-shot estimate
def test_one_shot_equal_distributions_is_near_zero():
    rng = np.random.default_rng(0)
    assert one_shot_epsilon(rng.normal(0, 1, 5000), rng.normal(0, 1, 5000), DELTA) < 0.3


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0])
def test_one_shot_recovers_the_gdp_epsilon(mu):
    rng = np.random.default_rng(1)
    d = 10_000  # null cosine ~ N(0, 1/d)
    scale = 1 / math.sqrt(d)
    estimate = one_shot_epsilon(rng.normal(mu * scale, scale, 5000), rng.normal(0, scale, 5000), DELTA)
    assert estimate == pytest.approx(gdp_epsilon(mu, DELTA), rel=0.1)


def test_gdp_epsilon_edges():
    assert gdp_epsilon(0.0, DELTA) == 0.0
    assert gdp_epsilon(1e-5, DELTA) == 0.0  # delta(0) = 2 Phi(mu/2) - 1 = 4e-6 is below delta already
    assert 0.0 < gdp_epsilon(1e-4, DELTA) < 1e-3
    assert gdp_epsilon(1.0, 1e-3) < gdp_epsilon(1.0, DELTA) < gdp_epsilon(2.0, DELTA)


# (6) bad inputs
@pytest.mark.parametrize("args, kwargs", [
    ((0, 0, 0), {"delta": 0.0}),
    ((100, 101, 0), {"delta": 0.0}),
    ((100, 10, 11), {"delta": 0.0}),
    ((100, 10, -1), {"delta": 0.0}),
    ((100.0, 10, 5), {"delta": 0.0}),
    ((100, True, 0), {"delta": 0.0}),
    ((100, 10, 5), {"delta": -1e-5}),
    ((100, 10, 5), {"delta": 1.0}),
    ((100, 10, 5), {"delta": math.nan}),
    ((100, 10, 5), {"delta": 0.0, "confidence": 1.0}),
    ((100, 10, 5), {"delta": 0.0, "confidence": 0.0}),
])
def test_lower_bound_rejects_bad_inputs(args, kwargs):
    with pytest.raises(ConfigurationError):
        one_run_lower_bound(*args, **kwargs)


@pytest.mark.parametrize("scores, included, k_pos, k_neg", [
    ([0.1, 0.2], [True], 1, 0),
    ([[0.1, 0.2]], [[True, False]], 1, 0),
    ([0.1, math.nan], [True, False], 1, 0),
    ([0.1, 0.2], [2, 0], 1, 0),
    ([0.1, 0.2], [True, False], 2, 1),
    ([0.1, 0.2], [True, False], -1, 0),
    ([], [], 0, 0),
])
def test_guesses_reject_bad_inputs(scores, included, k_pos, k_neg):
    with pytest.raises(ConfigurationError):
        canary_guesses(scores, included, k_pos, k_neg)


def test_other_bad_inputs():
    with pytest.raises(ConfigurationError):
        one_shot_epsilon([0.1], [0.0, 0.1], DELTA)
    with pytest.raises(ConfigurationError):
        one_shot_epsilon([0.1, 0.1], [0.1, 0.1], DELTA)
    with pytest.raises(ConfigurationError):
        one_shot_epsilon([0.1, 0.2], [0.0, 0.1], 0.0)
    with pytest.raises(ConfigurationError):
        gdp_epsilon(-1.0, DELTA)
    with pytest.raises(ConfigurationError):
        check_claim(-1.0, 0.5)
    with pytest.raises(ConfigurationError):
        check_claim(1.0, math.nan)
