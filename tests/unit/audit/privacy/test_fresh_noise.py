"""The fresh-noise test on synthetic releases: its false-alarm rate when the noise is fresh (with everything
else that only adds variance), and the reuse bugs it must catch."""

import numpy as np
import pytest

from secfl.audit.privacy import fresh_noise
from secfl.exceptions import ConfigurationError

M, T, Q = 250, 50, 0.1  # dp-distributed's shape: 250 canaries, 50 rounds, sampling rate 0.1
ALPHA = 0.005  # the half of the 1% flag budget canary_audit gives this test


def rounds(seed, *, m=M, t=T, rate=Q, signal=0.5):
    """Who is in (included, delivered) and fresh unit noise: the observations of a correct mechanism."""
    rng = np.random.default_rng(seed)
    included = rng.random(m) < 0.5
    delivered = rng.random((t, m)) < rate
    return rng.standard_normal((t, m)) + signal * (delivered & included[None, :]), delivered, included


def flagged(y, delivered, included, scales=None):
    scales = np.ones(y.shape[0]) if scales is None else scales
    return fresh_noise.floor_test(y, delivered, included, scales, alpha=ALPHA)["flagged"]


def test_fresh_noise_is_flagged_at_most_about_alpha_and_keeps_all_its_variance():
    flags, fractions = 0, []
    for seed in range(1000):
        y, delivered, included = rounds(seed, t=20)
        result = fresh_noise.floor_test(y, delivered, included, np.ones(20), alpha=ALPHA)
        flags += result["flagged"]
        fractions.append(result["pooled_fraction"])
    assert flags <= 14  # 0.5% of 1000 is 5; the binomial 99.99th percentile is about 14
    assert np.mean(fractions) == pytest.approx(1.0, abs=0.01)


def test_what_only_adds_variance_never_raises_the_alarm():
    """Drift that persists or changes, other groups' noise, more noise than reported, negative feedback."""
    flags = 0
    for seed in range(300):
        y, delivered, included = rounds(seed)
        rng = np.random.default_rng([seed, 1])
        y = y + rng.normal(0, 3.0, M)[None, :] + rng.normal(0, 0.5, (T, M))  # drift: fixed and changing
        y[1:] -= 0.2 * y[:-1]  # the honest clients pull back what the last round's noise moved
        flags += flagged(y, delivered, included)
    assert flags <= 5


def test_the_noise_the_pipeline_reports_per_round_is_the_reference():
    y, delivered, included = rounds(3)
    scales = np.where(np.arange(T) % 2 == 0, 1.0, 2.0)  # dropouts: rounds with more and less noise
    y = np.random.default_rng(4).standard_normal((T, M)) * scales[:, None] + 0.5 * (delivered & included[None, :])
    assert not flagged(y, delivered, included, scales)
    assert flagged(y, delivered, included, np.full(T, 2.0))  # had it reported 2 every round, half were short


def _reused(seed, make):
    y, delivered, included = rounds(seed)
    noise = make(np.random.default_rng([seed, 2]))
    return noise + 0.5 * (delivered & included[None, :]), delivered, included


REUSE = {
    "the same noise every round": lambda rng: np.repeat(rng.standard_normal((1, M)), T, axis=0),
    "two cached vectors in turn": lambda rng: rng.standard_normal((2, M))[np.arange(T) % 2],
    "a resume that replays the first half's seeds": lambda rng: np.tile(rng.standard_normal((T // 2, M)), (2, 1)),
    "half of the variance reused": lambda rng: np.sqrt(0.5) * (rng.standard_normal((1, M))
                                                               + rng.standard_normal((T, M))),
    "the last round's noise again in 1 round of 10": lambda rng: _stutter(rng.standard_normal((T, M))),
}


def _stutter(noise):
    noise[10::10] = noise[9:-1:10]
    return noise


@pytest.mark.parametrize("bug", REUSE)
def test_noise_reused_across_rounds_is_flagged(bug):
    assert all(flagged(*_reused(seed, REUSE[bug])) for seed in range(20))


def test_clients_whose_noise_is_fixed_by_their_id_are_flagged():
    """500 clients, 10% sampled: the noise of the clients sampled in both of two rounds cancels."""
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        fixed = rng.standard_normal((500, M))  # each client's noise, the same every round
        sampled = rng.random((T, 500)) < Q
        noise = np.stack([fixed[s].sum(axis=0) for s in sampled]) / np.sqrt(500 * Q)
        y, delivered, included = rounds(seed)
        hits += flagged(noise + 0.5 * (delivered & included[None, :]), delivered, included)
    assert hits >= 18  # measured 20 of 20: 10% of the variance shared between rounds, pooled over 25 pairs


def test_every_client_in_every_round_and_identical_releases_are_still_tested():
    y, delivered, included = rounds(5, rate=1.0)  # no canary ever changes side: the out-canaries suffice
    assert not flagged(y, delivered, included)
    stale = np.repeat(y[:1], T, axis=0)
    result = fresh_noise.floor_test(stale, delivered, included, np.ones(T), alpha=ALPHA)
    assert result["flagged"] and result["worst_fraction"] == 0.0 and result["worst_p"] == 0.0
    assert "leaves 0% of the noise variance" in fresh_noise.finding(result)


def test_bad_inputs_are_configuration_errors():
    y, delivered, included = rounds(6, m=10, t=4)
    for args, match in (((y[:1], delivered[:1], included, np.ones(1)), "one round"),
                        ((y, delivered, included, np.ones(3)), "must be"),
                        ((y, delivered, included[:5], np.ones(4)), "must be"),
                        ((y, delivered, included, np.zeros(4)), "finite and > 0"),
                        ((y * np.nan, delivered, included, np.ones(4)), "finite"),
                        ((y, np.ones_like(delivered), np.ones_like(included), np.ones(4)), "no pair")):
        with pytest.raises(ConfigurationError, match=match):
            fresh_noise.floor_test(*args, alpha=ALPHA)
    with pytest.raises(ConfigurationError, match="alpha"):
        fresh_noise.floor_test(y, delivered, included, np.ones(4), alpha=1.5)


def test_the_verdict_reports_a_fresh_noise_flag_even_without_a_gaussian_estimate():
    from secfl.audit.privacy.verdict import verdict_lines

    y, delivered, included = rounds(7)
    flagged_result = fresh_noise.floor_test(np.repeat(y[:1], T, axis=0), delivered, included, np.ones(T),
                                            alpha=ALPHA)
    result = {"name": "dp", "epsilon_claimed": 3.0, "delta": 1e-5,
              "audit": {"epsilon_lower_bound": 0.1, "audit_ceiling": 3.1, "correct": 10, "guesses": 12,
                        "gaussian": {"skipped": "too few rounds"}, "fresh_noise": flagged_result}}
    text = " ".join(verdict_lines([result]))
    assert "FLAGGED: releases share noise across rounds" in text and "Not contradicted" not in text
    assert "- fresh-noise test" not in text  # it ran; only the Gaussian estimate is listed as not run
    assert "- Gaussian estimate: too few rounds" in text
