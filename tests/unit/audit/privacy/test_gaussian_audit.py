"""The per-round canary observations, the likelihood-ratio score and the Gaussian estimate with its flag and
power, on synthetic releases drawn from the mechanism the accountant assumes (fast, exact ground truth)."""

import math
from types import SimpleNamespace

import dp_accounting
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.audit.privacy import gaussian_audit
from secfl.audit.privacy.canaries import Canaries
from secfl.audit.privacy.canary_rounds import CanaryRounds, likelihood_scores, noise_scale
from secfl.audit.privacy.epsilon import best_guess_audit
from secfl.exceptions import ConfigurationError
from secfl.privacy.accountant import Accountant

M, T, Q = 250, 50, 0.1  # dp-distributed's shape: 250 canaries, 50 rounds, sampling rate 0.1


def releases(mu, seed, *, m=M, rounds=T, rate=Q, others=0.0):
    """Observations of m canaries over the rounds: signal 1 when in and sampled, noise 1 / mu (+ others)."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    delivered = rng.random((rounds, m)) < rate
    noise = np.sqrt(1 / mu**2 + others**2)
    x = rng.normal(0.0, noise, (rounds, m)) + (delivered & included[None, :])
    return x, delivered, included


def eps_of(z, rounds):
    return Accountant("pld").epsilon(noise_multiplier=z, sample_rate=Q, rounds=rounds, delta=1e-5)


def noise_of(eps, rounds):
    return Accountant("pld").noise_multiplier(target_epsilon=eps, sample_rate=Q, rounds=rounds, delta=1e-5)


def fake_z(z, rounds):  # a cheap monotone stand-in for the accountant: the flag depends only on mu_claim
    return 1 / z


def fake_noise(eps, rounds):
    return 1 / eps


def test_the_estimate_recovers_mu_within_its_standard_error():
    errors = []
    for seed in range(200):
        x, delivered, included = releases(0.75, seed)
        est = gaussian_audit.estimate(x, delivered, included)
        errors.append((est.mu - 0.75) / est.stderr)
    assert abs(np.mean(errors)) < 0.25 and 0.8 < np.std(errors) < 1.2  # unbiased, and se is the right size


@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
@settings(max_examples=30, deadline=None)
def test_the_estimate_does_not_depend_on_the_units_of_the_release(scale, seed):
    x, delivered, included = releases(1.0, seed, m=40, rounds=10, rate=0.5)
    a = gaussian_audit.estimate(x, delivered, included)
    b = gaussian_audit.estimate(x * scale, delivered, included)
    assert b.mu == pytest.approx(a.mu, rel=1e-9) and b.stderr == pytest.approx(a.stderr, rel=1e-9)


def test_a_correct_mechanism_is_flagged_about_one_percent_of_the_time_and_half_the_noise_always():
    correct = [gaussian_audit.assess(gaussian_audit.estimate(*releases(0.5, seed)), claimed=2.0, rounds=T,
                                     epsilon_of=fake_z, noise_of=fake_noise, confidence=0.99)["flagged"]
               for seed in range(500)]  # fake_noise: mu_claim = the claim
    assert sum(correct) == 0  # mu 0.5 is far below mu_claim = 2
    at_claim = [gaussian_audit.assess(gaussian_audit.estimate(*releases(0.5, seed)), claimed=0.5, rounds=T,
                                      epsilon_of=fake_z, noise_of=fake_noise, confidence=0.99)["flagged"]
                for seed in range(500)]
    assert sum(at_claim) <= 15  # 1% of 500 is 5; binomial 99.99th percentile is about 15
    half = [gaussian_audit.assess(gaussian_audit.estimate(*releases(1.0, seed)), claimed=0.5, rounds=T,
                                  epsilon_of=fake_z, noise_of=fake_noise, confidence=0.99)["flagged"]
            for seed in range(50)]
    assert all(half)


def test_the_power_is_what_it_says():
    first = gaussian_audit.assess(gaussian_audit.estimate(*releases(0.5, 0)), claimed=0.5, rounds=T,
                                  epsilon_of=fake_z, noise_of=fake_noise, confidence=0.99)
    mu = 1 / first["detectable_noise_multiplier"]
    assert first["detectable_epsilon"] == pytest.approx(mu)  # fake_z: epsilon = 1 / z = mu
    flagged = [gaussian_audit.assess(gaussian_audit.estimate(*releases(mu, seed)), claimed=0.5, rounds=T,
                                     epsilon_of=fake_z, noise_of=fake_noise, confidence=0.99)["flagged"]
               for seed in range(400)]
    assert 0.90 <= np.mean(flagged) <= 0.99  # 95% power, up to sampling error


def test_assess_with_the_real_accountant_reports_epsilon_and_its_limits():
    z = noise_of(3.0, T)
    result = gaussian_audit.assess(gaussian_audit.estimate(*releases(1 / z, 1)), claimed=3.0, rounds=T,
                                   epsilon_of=eps_of, noise_of=noise_of, confidence=0.99)
    assert result["epsilon_low"] < result["epsilon"] < result["epsilon_high"]
    assert result["epsilon_low"] < 3.0 < result["epsilon_high"] and not result["flagged"]
    assert result["noise_multiplier_claimed"] == pytest.approx(z)
    assert 3.0 < result["detectable_epsilon"] < 6.0


def test_bad_inputs_are_configuration_errors():
    x, delivered, included = releases(1.0, 0, m=10, rounds=4, rate=0.5)
    with pytest.raises(ConfigurationError, match="must be"):
        gaussian_audit.estimate(x, delivered[:, :5], included)
    with pytest.raises(ConfigurationError, match="at least 2"):
        gaussian_audit.estimate(x, np.zeros_like(delivered), included)
    with pytest.raises(ConfigurationError, match="spread"):
        gaussian_audit.estimate(np.zeros_like(x), delivered, included)
    with pytest.raises(ConfigurationError, match="not all finite"):  # not a silent mu of NaN, "not flagged"
        gaussian_audit.estimate(np.where(delivered, np.nan, x), delivered, included)
    est = gaussian_audit.estimate(x, delivered, included)
    for bad in ({"confidence": 1.0}, {"confidence": 0.9, "power": 0.0}, {"confidence": 0.9, "claimed": math.inf}):
        args = {"claimed": 1.0, "rounds": 3, "epsilon_of": fake_z, "noise_of": fake_noise, **bad}
        with pytest.raises(ConfigurationError):
            gaussian_audit.assess(est, **args)


def test_likelihood_scores_match_the_formula_and_reduce_to_the_sum_without_sampling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    direct = np.log(1 - 0.3 + 0.3 * np.exp((2.0 * x - 2.0) / 1.5**2)).cumsum(axis=0)
    assert np.allclose(likelihood_scores(x, signal=2.0, noise=1.5, rate=0.3), direct)
    full = likelihood_scores(x, signal=2.0, noise=1.5, rate=1.0)
    assert np.allclose(full[-1], (2.0 * x.sum(axis=0) - 6 * 2.0) / 1.5**2)
    huge = likelihood_scores(np.full((2, 2), 1e6), signal=1.0, noise=1e-3, rate=0.5)
    assert np.all(np.isfinite(huge))  # log-sum-exp: no overflow
    for bad in ({"signal": 0.0}, {"noise": math.nan}, {"rate": 0.0}):
        with pytest.raises(ConfigurationError):
            likelihood_scores(x, **{"signal": 1.0, "noise": 1.0, "rate": 0.5, **bad})
    with pytest.raises(ConfigurationError):
        likelihood_scores(np.ones(3), signal=1.0, noise=1.0, rate=0.5)


def test_noise_scale_ignores_the_rare_canary_signal():
    x, _, _ = releases(0.5, 3)  # noise std 2, signal 1 in about 5% of the observations
    assert noise_scale(x) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(ConfigurationError):
        noise_scale(np.array([np.inf]))


def test_the_likelihood_score_is_a_stronger_one_run_audit_than_the_summed_projection():
    x, delivered, included = releases(1 / 0.67, 5)  # half dp-distributed's noise: mu about 1.5
    llr = likelihood_scores(x, signal=1.0, noise=noise_scale(x), rate=Q)[-1]
    summed = best_guess_audit(x.sum(axis=0), included, delta=1e-5, confidence=0.95, claimed_epsilon=None)
    better = best_guess_audit(llr, included, delta=1e-5, confidence=0.95, claimed_epsilon=None)
    assert better["epsilon_lower_bound"] > summed["epsilon_lower_bound"] + 0.5


def round_seen(canaries, groups, weights):
    """A round as the engine reports it: ``groups`` [(client ids, their group's sum)], the weighted mean."""
    sums = np.stack([total for _, total in groups])
    w = np.asarray(weights, dtype=float)
    output = SimpleNamespace(aggregate=sums.sum(axis=0) / w.sum(), group_means=sums / w[:, None], group_weights=w,
                             result=SimpleNamespace(survivors=[ids for ids, _ in groups]))
    return SimpleNamespace(output=output)


def test_canary_rounds_records_the_release_and_each_canarys_own_group_sum():
    canaries = Canaries(num_clients=10, num_canaries=3, dim=5, norm=1.0, seed=0)
    rounds = CanaryRounds(canaries)
    a, b, c = (int(x) for x in canaries.slots)
    first, second = np.arange(5, dtype=float), np.ones(5)
    rounds(round_seen(canaries, [([a, 99], first), ([b], second)], [3.0, 1.0]))
    u = [canaries.direction(i) for i in range(3)]
    assert np.allclose(rounds.observations[0], [(first + second) @ u[i] for i in range(3)], atol=1e-5)
    # a and b: their own group's sum; c took no part: the group its index picks in round 0 (2 % 2 = 0)
    assert np.allclose(rounds.own_group[0], [first @ u[0], second @ u[1], first @ u[2]], atol=1e-5)
    assert rounds.delivered.tolist() == [[True, True, False]]
    assert [g.tolist() for g in rounds.groups] == [[0, 1, 0]]
    assert np.isnan(rounds.noise_multipliers).tolist() == [True]  # no Gaussian privacy event in this round
    seen = round_seen(canaries, [([a, b], first)], [2.0])
    seen.output.dp_event = dp_accounting.GaussianDpEvent(noise_multiplier=1.5)
    rounds(seen)
    assert rounds.noise_multipliers[1] == 1.5


def test_crosstalk_is_what_the_other_in_canaries_of_the_group_add():
    canaries = Canaries(num_clients=20, num_canaries=4, dim=6, norm=2.0, seed=3)
    rounds = CanaryRounds(canaries)
    ids = [int(x) for x in canaries.slots]
    rounds(round_seen(canaries, [(ids[:3], np.zeros(6)), ([ids[3]], np.zeros(6))], [3.0, 1.0]))
    included = np.array([True, True, False, True])
    u = np.stack([canaries.direction(i) for i in range(4)])
    expected = [2.0 * (u[1] @ u[0]), 2.0 * (u[0] @ u[1]), 2.0 * (u[0] + u[1]) @ u[2], 0.0]  # canary 3 is alone
    assert np.allclose(rounds.crosstalk(included, 2.0)[0], expected, atol=1e-5)


def test_the_jackknife_keeps_the_flag_honest_when_a_canarys_rounds_are_correlated():
    k = 2.3263478740408408  # the one-sided 99% normal quantile
    formula_flags = jackknife_flags = 0
    for seed in range(300):  # every canary in every round, and a fixed offset along each canary's direction
        x, delivered, included = releases(0.5, seed, rate=1.0, rounds=30)
        x = x + np.random.default_rng([seed, 1]).normal(0, 0.6, x.shape[1])[None, :]
        est = gaussian_audit.estimate(x, delivered, included)
        formula = gaussian_audit.stderr(est.mu, est.signal_count, est.null_count)
        formula_flags += est.mu - k * formula > 0.5
        jackknife_flags += gaussian_audit.assess(est, claimed=0.5, rounds=30, epsilon_of=fake_z, noise_of=fake_noise,
                                                 confidence=0.99)["flagged"]
    assert formula_flags >= 9  # measured 11 of 300: the independent-observation formula over-flags (3.7%)
    assert jackknife_flags <= 4  # measured 2 of 300: about the 1% it promises
