import math

import dp_accounting
import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError
from secfl.privacy import Accountant, DiscreteSumDpEvent, Ledger

REF = {"noise_multiplier": 1.0, "sample_rate": 0.01, "rounds": 1000, "delta": 1e-5}


def test_reference_values_pld_and_rdp():
    assert Accountant("pld").epsilon(**REF) == pytest.approx(1.83, rel=0.02)
    assert Accountant("rdp").epsilon(**REF) == pytest.approx(2.10, rel=0.02)


def test_pld_agrees_with_opacus_prv_and_rdp_with_opacus_rdp():
    prv = PRVAccountant()
    rdp = RDPAccountant()
    for accountant in (prv, rdp):
        accountant.history = [(1.0, 0.01, 1000)]
    assert Accountant("pld").epsilon(**REF) == pytest.approx(prv.get_epsilon(delta=1e-5), rel=0.02)
    assert Accountant("rdp").epsilon(**REF) == pytest.approx(rdp.get_epsilon(delta=1e-5), rel=0.02)
    assert prv.get_epsilon(delta=1e-5) == pytest.approx(1.84, rel=0.02)


@pytest.mark.parametrize(("target", "z"), [(1.0, 1.52), (3.0, 0.87), (8.0, 0.62)])
def test_solved_noise_multiplier_matches_the_reference_and_meets_the_target(target, z):
    acc = Accountant("rdp")
    solved = acc.noise_multiplier(target_epsilon=target, sample_rate=0.01, rounds=1000, delta=1e-5)
    assert solved == pytest.approx(z, rel=0.02)
    assert acc.epsilon(noise_multiplier=solved, sample_rate=0.01, rounds=1000, delta=1e-5) <= target
    assert acc.epsilon(noise_multiplier=solved * 0.99, sample_rate=0.01, rounds=1000, delta=1e-5) > target


def test_pld_solver_is_tighter_than_rdp():
    args = {"target_epsilon": 3.0, "sample_rate": 0.1, "rounds": 50, "delta": 1e-5}
    assert Accountant("pld").noise_multiplier(**args) < Accountant("rdp").noise_multiplier(**args)


def test_without_replacement_counts_a_replaced_client_twice():
    ours = Accountant("rdp", "without_replacement").epsilon(**REF)
    raw = dp_accounting.rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    raw.compose(dp_accounting.SampledWithoutReplacementDpEvent(100, 1, dp_accounting.GaussianDpEvent(0.5)), 1000)
    assert ours == pytest.approx(raw.get_epsilon(1e-5), rel=1e-9)
    assert ours > Accountant("rdp", "poisson").epsilon(**REF)


def test_compositions_and_degenerate_events():
    acc = Accountant("pld")
    g = dp_accounting.GaussianDpEvent(1.0)
    split = acc.epsilon_of([(g, 400), (g, 600)], sample_rate=0.01, delta=1e-5)
    assert split == pytest.approx(acc.epsilon(**REF), rel=1e-9)
    assert acc.epsilon_of([(dp_accounting.NoOpDpEvent(), 10)], sample_rate=0.5, delta=1e-5) == 0.0
    assert acc.epsilon_of([(dp_accounting.NonPrivateDpEvent(), 1)], sample_rate=0.5, delta=1e-5) == math.inf
    assert acc.epsilon(noise_multiplier=0.0, sample_rate=0.5, rounds=1, delta=1e-5) == math.inf


def test_discrete_events_are_priced_in_rdp_only():
    event = DiscreteSumDpEvent("dgauss", l2=1000.0, l1=1000.0 * 256, local_stddev=100.0, clients=100, dim=2**16,
                               scale=1000.0)
    rdp = Accountant("rdp").epsilon_of([(event, 100)], sample_rate=0.1, delta=1e-5)
    # same RDP as a Gaussian with z = 100 * sqrt(100) / 1000 = 1: the general subsampling bound is looser
    tight = Accountant("rdp").epsilon(noise_multiplier=1.0, sample_rate=0.1, rounds=100, delta=1e-5)
    assert tight < rdp < 1.5 * tight
    with pytest.raises(ConfigurationError, match="rdp"):
        Accountant("pld").epsilon_of([(event, 1)], sample_rate=0.1, delta=1e-5)


@pytest.mark.parametrize("kwargs", [{"kind": "prv"}, {"sampling": "shuffle"},
                                    {"kind": "pld", "sampling": "without_replacement"}])
def test_bad_accountants(kwargs):
    with pytest.raises(ConfigurationError):
        Accountant(**kwargs)


@pytest.mark.parametrize("change", [{"sample_rate": 0.0}, {"sample_rate": 1.5}, {"delta": 0.0}, {"rounds": 0},
                                    {"noise_multiplier": -1.0}, {"noise_multiplier": float("nan")}])
def test_bad_arguments(change):
    with pytest.raises(ConfigurationError):
        Accountant("rdp").epsilon(**{**REF, **change})


def test_unreachable_target_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="no noise multiplier"):
        Accountant("rdp").noise_multiplier(target_epsilon=1e-6, sample_rate=1.0, rounds=10**6, delta=1e-9)


def test_ledger_composes_rounds_and_guards_the_budget():
    acc = Accountant("rdp")
    ledger = Ledger(acc, sample_rate=0.01, delta=1e-5, budget=1.0)
    g = dp_accounting.GaussianDpEvent(1.0)
    eps = []
    for _ in range(3):
        ledger.record(g)
        eps.append(ledger.epsilon())
    assert eps == sorted(eps) and ledger.rounds == 3
    assert eps[-1] == pytest.approx(acc.epsilon(noise_multiplier=1.0, sample_rate=0.01, rounds=3, delta=1e-5))
    weaker = dp_accounting.GaussianDpEvent(0.3)
    with pytest.raises(PrivacyBudgetExceededError, match="budget 1"):
        for _ in range(10_000):
            ledger.check(weaker)
            ledger.record(weaker)
    assert ledger.epsilon() <= 1.0 < ledger.epsilon(weaker)
    with pytest.raises(ConfigurationError):
        Ledger(acc, sample_rate=0.01, delta=1e-5, budget=-1.0)
    with pytest.raises(ConfigurationError):
        Ledger(acc, sample_rate=2.0, delta=1e-5)


def test_unsampled_gaussian_rounds_are_priced_exactly_in_closed_form():
    from secfl.privacy.gdp import gdp_epsilon

    events = [(dp_accounting.GaussianDpEvent(1.3), 7), (dp_accounting.GaussianDpEvent(0.9), 3)]
    exact = Accountant("pld").epsilon_of(events, sample_rate=1.0, delta=1e-5)
    assert exact == pytest.approx(gdp_epsilon(math.sqrt(7 / 1.3**2 + 3 / 0.9**2), 1e-5), rel=1e-9)
    grid = Accountant("pld")._fresh()  # the numerical PLD on its grid: an upper bound just above it
    for event, count in events:
        grid.compose(event, count)
    assert exact <= grid.get_epsilon(1e-5) <= exact * 1.01
    assert Accountant("pld").epsilon_of([(dp_accounting.GaussianDpEvent(0.0), 1)], sample_rate=1.0,
                                        delta=1e-5) == math.inf
