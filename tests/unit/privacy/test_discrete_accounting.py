"""Accounting for the distributed discrete Gaussian and Skellam mechanisms (secfl.privacy.discrete)."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.privacy import discrete as dd
from secfl.privacy import rdp

ALPHAS = np.array(rdp.ORDERS, dtype=np.float64)
# dp_accounting's replace-one WOR accountant is O(alpha^2) in pure Python up to order 256: compare on
# fewer orders to keep the tests fast.
WOR_ORDERS = tuple(range(2, 65)) + (128, 512, 1024)
WOR_ALPHAS = np.array(WOR_ORDERS, dtype=np.float64)

# The reference setting (docs: privacy.md section 2.3): n = 100 clients, d = 2^16, c = 1, central
# noise multiplier z = 1 (local stddev z c / sqrt(n), unscaled), beta = e^-0.5, delta = 1e-5, q = 1.
N, DIM, CLIP, Z = 100, 2**16, 1.0, 1.0
BETA, DELTA = math.exp(-0.5), 1e-5
LOCAL_STDDEV = Z * CLIP / math.sqrt(N)

# bits -> (scale, Delta_2 / (c s), eps after 1 round, eps after 100 rounds), 3-digit reference values
REFERENCE = {
    10: (122, 1.45, 7.31, 221),
    12: (490, 1.035, 4.93, 117),
    14: (1961, 1.002, 4.76, 110.6),
    16: (7845, 1.000, 4.75, 110.1),
}


def _setting(bits: int, z: float = Z) -> dict:
    local = z * CLIP / math.sqrt(N)
    scale = dd.heuristic_scale(bits, N, DIM, CLIP, local, dd.modclip_k(1e-4))
    return dict(
        l2_clip=CLIP, scale=scale, beta=BETA, local_stddev_scaled=local * scale, clients=N, dim=DIM, delta=DELTA
    )


def _gaussian_rdp(z: float) -> np.ndarray:
    return ALPHAS / (2.0 * z * z)


def _dp_accounting_rdp(
    event, relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE, orders=rdp.ORDERS
) -> np.ndarray:
    accountant = dp_accounting.rdp.RdpAccountant(orders=orders, neighboring_relation=relation)
    accountant.compose(event)
    return accountant.rdp


# ---------------------------------------------------------------- building blocks


def test_orders_are_integers_from_2_to_256_plus_large():
    assert rdp.ORDERS[:255] == tuple(range(2, 257))
    assert {512, 1024} <= set(rdp.ORDERS)
    assert all(isinstance(a, int) for a in rdp.ORDERS)


def test_modclip_k():
    assert dd.modclip_k(1e-4) == pytest.approx(3.8906, abs=1e-4)
    # two-sided tail of N(0, 1): P(|X| > 1.96) = 0.05
    assert dd.modclip_k(0.05) == pytest.approx(1.95996, abs=1e-5)


def test_inflated_l2_formula():
    c, s, d = 1.0, 100.0, 10_000
    assert dd.inflated_l2(c, s, d, 0.0) == pytest.approx(c * s + math.sqrt(d))
    conditioned = math.sqrt(c**2 * s**2 + d / 4 + math.sqrt(2 * 0.5) * (c * s + math.sqrt(d) / 2))
    assert dd.inflated_l2(c, s, d, math.exp(-0.5)) == pytest.approx(conditioned)
    # for a tiny beta the conditional bound is worse than the plain one: the min picks the plain one
    assert dd.inflated_l2(c, 1.0, 1, 1e-300) == pytest.approx(c + 1.0)


def test_inflated_l1_uses_integrality_when_it_helps():
    assert dd.inflated_l1(3.0, 10_000) == pytest.approx(9.0)  # L2^2 < sqrt(d) L2
    assert dd.inflated_l1(300.0, 100) == pytest.approx(3000.0)  # sqrt(d) L2


def test_heuristic_scale_formula_and_cap():
    n, d, c, sigma, k = 100, 2**16, 1.0, 0.1, 3.89
    expected = math.sqrt(2**20 - n * k * k) / (2 * k * math.sqrt(c * c * n * n / d + n * sigma * sigma))
    assert dd.heuristic_scale(10, n, d, c, sigma, k) == pytest.approx(expected)
    assert dd.heuristic_scale(40, n, d, c, sigma, k) == dd.MAX_SCALE


def test_ddg_tau():
    assert dd.ddg_tau(0.5, 1) == 0.0  # a single discrete Gaussian: exact
    assert dd.ddg_tau(1.0, 2) == pytest.approx(10 * math.exp(-math.pi**2))
    assert dd.ddg_tau(0.5, 100) > 1.0
    for sigma in (2.0, 3.0, 10.0, 100.0):
        assert dd.ddg_tau(sigma, 1000) < 1e-15


# ---------------------------------------------------------------- the reference table


@pytest.mark.parametrize("bits", sorted(REFERENCE))
def test_reproduces_the_reference_table(bits):
    scale_ref, inflation_ref, eps1_ref, eps100_ref = REFERENCE[bits]
    setting = _setting(bits)
    inflation = dd.inflated_l2(CLIP, setting["scale"], DIM, BETA) / (CLIP * setting["scale"])
    assert setting["scale"] == pytest.approx(scale_ref, rel=0.005)
    assert inflation == pytest.approx(inflation_ref, rel=0.002)
    assert dd.ddg_epsilon(**setting, rounds=1) == pytest.approx(eps1_ref, rel=0.01)
    assert dd.ddg_epsilon(**setting, rounds=100) == pytest.approx(eps100_ref, rel=0.01)


@pytest.mark.parametrize("rounds", [1, 100])
def test_16_bits_is_the_continuous_gaussian(rounds):
    eps = dd.ddg_epsilon(**_setting(16), rounds=rounds)
    same_orders = dp_accounting.rdp.RdpAccountant(orders=rdp.ORDERS)
    same_orders.compose(dp_accounting.GaussianDpEvent(Z), rounds)
    assert eps == pytest.approx(same_orders.get_epsilon(DELTA), rel=0.01)


def test_integer_orders_cost_epsilon_when_the_optimal_order_is_below_2():
    # With dp_accounting's default orders (which include 1.1 ... 1.9) the continuous Gaussian is
    # 4.73 after 1 round but 96.1 (not 110.1) after 100: the optimal order is about 1.5. The
    # reference table was computed on integer orders. Without subsampling, fractional orders are
    # valid for ddg_epsilon and recover the smaller value.
    default = dp_accounting.rdp.RdpAccountant()
    default.compose(dp_accounting.GaussianDpEvent(Z), 100)
    eps_default = default.get_epsilon(DELTA)
    assert eps_default == pytest.approx(96.1, rel=0.005)
    fractional = dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    eps_fractional = dd.ddg_epsilon(**_setting(16), rounds=100, orders=fractional)
    assert eps_fractional == pytest.approx(eps_default, rel=0.01)
    assert dd.ddg_epsilon(**_setting(16), rounds=100) > 1.1 * eps_fractional
    with pytest.raises(ConfigurationError, match="integer"):
        dd.ddg_epsilon(**_setting(16), rounds=100, orders=fractional, sampling_rate=0.5)


# ---------------------------------------------------------------- mechanisms vs the Gaussian


def test_ddg_is_gaussian_once_tau_vanishes():
    l2, l1, n, d = 300.0, 5000.0, 50, 10_000
    for sigma in (2.0, 5.0, 40.0):
        a = l2 / (math.sqrt(n) * sigma)
        rdp = dd.ddg_rdp(ALPHAS, l2, l1, sigma, n, d)
        np.testing.assert_allclose(rdp, ALPHAS * a * a / 2, rtol=1e-10)


def test_ddg_pays_for_tau_when_shares_are_narrow():
    l2, l1, n, d = 3.0, 9.0, 100, 1000
    sigma = 0.6
    tau = dd.ddg_tau(sigma, n)
    assert tau > 0.1
    a, b = l2 / (math.sqrt(n) * sigma), l1 / (math.sqrt(n) * sigma)
    rdp = dd.ddg_rdp(ALPHAS, l2, l1, sigma, n, d)
    assert np.all(rdp > ALPHAS * a * a / 2)
    terms = np.stack(
        [
            ALPHAS * a * a / 2 + tau * d,
            ALPHAS / 2 * (a * a + 2 * b * tau + tau * tau * d),
            ALPHAS / 2 * (a + tau * math.sqrt(d)) ** 2,
        ]
    )
    np.testing.assert_allclose(rdp, terms.min(axis=0), rtol=1e-12)


@pytest.mark.parametrize(
    "l2, l1, sigma, n, d, alpha, active",
    [
        (3.0, 9.0, 0.6, 100, 1000, 10, 0),  # big tau: pay tau d once
        (30.0, 900.0, 0.8, 10, 10_000, 2, 1),  # the L1 term
        (3.0, 3000.0, 0.8, 10, 100, 2, 2),  # a loose L1 bound: the (a + tau sqrt(d))^2 term
    ],
)
def test_ddg_rdp_takes_each_of_the_three_bounds(l2, l1, sigma, n, d, alpha, active):
    tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1)) for k in range(1, n))
    a, b = l2 / (math.sqrt(n) * sigma), l1 / (math.sqrt(n) * sigma)
    terms = [
        alpha * a * a / 2 + tau * d,
        alpha / 2 * (a * a + 2 * b * tau + tau * tau * d),
        alpha / 2 * (a + tau * math.sqrt(d)) ** 2,
    ]
    assert min(terms) == terms[active] and sorted(terms)[1] > 1.05 * terms[active]
    assert dd.ddg_rdp([alpha], l2, l1, sigma, n, d)[0] == pytest.approx(terms[active], rel=1e-12)


def test_skellam_rdp_formula_in_both_regimes():
    # fine scale: alpha l2^2/(2 mu) + ((2 alpha - 1) s l2^2 + 6 l1) / (4 s^3 mu^2)
    expected = 3 / 2 + (5 * 100 + 60) / (4 * 100**3)
    assert dd.skellam_rdp([3.0], 1.0, 10.0, 1.0, 100.0)[0] == pytest.approx(expected, rel=1e-12)
    # coarse scale: alpha l2^2/(2 mu) + 3 l1 / (2 s mu)
    expected = 3 / (2 * 0.5) + 3 * 10 / (2 * 1 * 0.5)
    assert dd.skellam_rdp([3.0], 1.0, 10.0, 0.5, 1.0)[0] == pytest.approx(expected, rel=1e-12)


def test_skellam_tends_to_gaussian_for_huge_scale():
    l2, l1, mu = 1.0, 50.0, 2.0
    gaussian = ALPHAS * l2 * l2 / (2 * mu)
    np.testing.assert_allclose(dd.skellam_rdp(ALPHAS, l2, l1, mu, 1e8), gaussian, rtol=1e-6)
    coarse = dd.skellam_rdp(ALPHAS, l2, l1, mu, 10.0)
    assert np.all(coarse > gaussian)


def test_skellam_scaled_and_unscaled_units_agree():
    l2, l1, mu, s = 1.2, 40.0, 1.5, 300.0
    unscaled = dd.skellam_rdp(ALPHAS, l2, l1, mu, s)
    integer_domain = dd.skellam_rdp(ALPHAS, l2 * s, l1 * s, mu * s * s, 1.0)
    np.testing.assert_allclose(unscaled, integer_domain, rtol=1e-12)


def test_skellam_matches_ddg_in_the_reference_setting():
    for bits in (12, 16):
        setting = _setting(bits)
        assert dd.skellam_epsilon(**setting, rounds=10) == pytest.approx(dd.ddg_epsilon(**setting, rounds=10), rel=0.01)


# ---------------------------------------------------------------- subsampling


@pytest.mark.parametrize("q, z", [(0.01, 1.0), (0.1, 1.0), (0.01, 0.5), (0.001, 2.0), (0.5, 1.0)])
def test_poisson_bound_sits_between_exact_and_exact_plus_log3(q, z):
    exact = _dp_accounting_rdp(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)))
    bound = rdp.poisson_subsampled_rdp(q, _gaussian_rdp(z), ALPHAS)
    assert np.all(bound >= exact * (1 - 1e-9))
    # for the Gaussian the exact value is the same binomial sum with every coefficient 1 instead of 3
    assert np.all(bound <= exact + math.log(3) / (ALPHAS - 1) + 1e-9)


def test_subsampling_bounds_match_the_theorems_evaluated_directly():
    # A non-Gaussian curve at small orders, evaluated without logs (ZW19 general bound; WBK19 Thm 9).
    orders = np.array([2.0, 3.0, 4.0, 5.0])
    eps = {2: 0.3, 3: 0.5, 4: 0.9, 5: 1.6}
    q = 0.2
    for alpha in (3, 4, 5):
        poisson = (1 - q) ** (alpha - 1) * (alpha * q - q + 1)
        poisson += math.comb(alpha, 2) * q**2 * (1 - q) ** (alpha - 2) * math.exp(eps[2])
        poisson += 3 * sum(
            math.comb(alpha, l) * (1 - q) ** (alpha - l) * q**l * math.exp((l - 1) * eps[l])
            for l in range(3, alpha + 1)
        )
        wor = 1 + q**2 * math.comb(alpha, 2) * min(4 * math.expm1(eps[2]), 2 * math.exp(eps[2]))
        wor += sum(2 * q**j * math.comb(alpha, j) * math.exp((j - 1) * eps[j]) for j in range(3, alpha + 1))
        curve = np.array([eps[int(a)] for a in orders])
        i = alpha - 2
        assert rdp.poisson_subsampled_rdp(q, curve, orders)[i] == pytest.approx(
            min(math.log(poisson) / (alpha - 1), eps[alpha]), rel=1e-12
        )
        assert rdp.wor_subsampled_rdp(q, curve, orders)[i] == pytest.approx(
            min(math.log(wor) / (alpha - 1), eps[alpha]), rel=1e-12
        )


def test_a_loose_low_order_value_is_replaced_by_a_tighter_higher_order_one():
    # RDP is non-decreasing in the order, so eps(2) <= 0.5 follows from the value given at 3.
    orders = np.array([2.0, 3.0, 4.0])
    for fn in (rdp.poisson_subsampled_rdp, rdp.wor_subsampled_rdp):
        loose = fn(0.1, np.array([1.0, 0.5, 0.7]), orders)
        tight = fn(0.1, np.array([0.5, 0.5, 0.7]), orders)
        np.testing.assert_allclose(loose, tight, rtol=1e-12)


def test_poisson_bound_is_within_about_2x_of_exact_at_q_001():
    exact = _dp_accounting_rdp(dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(1.0)))
    bound = rdp.poisson_subsampled_rdp(0.01, _gaussian_rdp(1.0), ALPHAS)
    assert np.max(bound / exact) < 2.5  # 2.31 at alpha = 10
    eps_bound = rdp.rdp_to_epsilon(ALPHAS, 1000 * bound, 1e-5)
    eps_exact = rdp.rdp_to_epsilon(ALPHAS, 1000 * exact, 1e-5)
    assert eps_exact <= eps_bound < 1.2 * eps_exact  # 2.11 vs 2.45


@pytest.mark.parametrize("q, z", [(0.01, 1.0), (0.1, 1.0), (0.01, 0.5), (0.001, 2.0), (0.5, 1.0)])
def test_wor_bound_is_at_least_dp_accounting_replace_one(q, z):
    # dp_accounting reads GaussianDpEvent(z) under REPLACE_ONE as base RDP alpha / (2 z^2): z is
    # stddev / replace-one sensitivity. Feeding the same base curve gives a bound at least as large
    # as its Gaussian-specific (tighter) WBK19 Thm 27.
    population = 100_000
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        population, int(q * population), dp_accounting.GaussianDpEvent(z)
    )
    reference = _dp_accounting_rdp(event, dp_accounting.NeighboringRelation.REPLACE_ONE, WOR_ORDERS)
    base = WOR_ALPHAS / (2.0 * z * z)
    bound = rdp.wor_subsampled_rdp(q, base, WOR_ALPHAS)
    assert np.all(bound >= reference * (1 - 1e-9))
    assert np.all(bound <= base)
    assert np.max(bound / reference) < 1.1


def test_without_replacement_doubles_the_sensitivity():
    # With no rounding inflation and tau = 0 the DDG is the Gaussian with z_eff = sqrt(n) sigma / Delta_2;
    # replace-one neighbours move the sum by up to 2 Delta_2, so it must match dp_accounting at z_eff / 2.
    setting = _setting(16)
    l2 = dd.inflated_l2(CLIP, setting["scale"], DIM, BETA)
    z_eff = math.sqrt(N) * setting["local_stddev_scaled"] / l2
    q, population, rounds = 0.1, 10_000, 50
    eps = dd.ddg_epsilon(
        **setting, rounds=rounds, sampling_rate=q, sampling="without_replacement", orders=WOR_ORDERS
    )
    accountant = dp_accounting.rdp.RdpAccountant(
        orders=WOR_ORDERS, neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )
    event = dp_accounting.SampledWithoutReplacementDpEvent(
        population, int(q * population), dp_accounting.GaussianDpEvent(z_eff / 2)
    )
    accountant.compose(event, rounds)
    assert eps == pytest.approx(accountant.get_epsilon(DELTA), rel=0.01)
    assert eps >= accountant.get_epsilon(DELTA) * (1 - 1e-9)
    poisson = dd.ddg_epsilon(**setting, rounds=rounds, sampling_rate=q, sampling="poisson", orders=WOR_ORDERS)
    assert poisson < eps


def test_subsampling_edge_rates():
    curve = _gaussian_rdp(1.0)
    for fn in (rdp.poisson_subsampled_rdp, rdp.wor_subsampled_rdp):
        np.testing.assert_array_equal(fn(0.0, curve, ALPHAS), np.zeros_like(curve))
        np.testing.assert_array_equal(fn(1.0, curve, ALPHAS), curve)
        assert np.all(fn(0.999, curve, ALPHAS) <= curve)


def test_subsampling_never_overflows_and_handles_infinity():
    huge = ALPHAS * 1e4  # e^((l-1) eps(l)) would overflow any float
    for fn in (rdp.poisson_subsampled_rdp, rdp.wor_subsampled_rdp):
        out = fn(1e-3, huge, ALPHAS)
        assert np.all(np.isfinite(out)) and np.all(out <= huge)
        infinite = np.full_like(ALPHAS, np.inf)
        assert np.all(np.isinf(fn(1e-3, infinite, ALPHAS)))


def test_sparse_orders_give_a_looser_but_valid_bound():
    sparse = np.array([2, 4, 8, 16, 32, 64], dtype=np.float64)
    for fn in (rdp.poisson_subsampled_rdp, rdp.wor_subsampled_rdp):
        dense = fn(0.05, _gaussian_rdp(1.0), ALPHAS)
        coarse = fn(0.05, sparse / 2.0, sparse)
        on_dense = dense[np.searchsorted(ALPHAS, sparse)]
        assert np.all(coarse >= on_dense * (1 - 1e-12))


# ---------------------------------------------------------------- conversion


@pytest.mark.parametrize("z, rounds, delta", [(1.0, 1, 1e-5), (1.0, 100, 1e-5), (0.7, 10, 1e-6), (3.0, 1000, 1e-3)])
def test_rdp_to_epsilon_matches_dp_accounting(z, rounds, delta):
    accountant = dp_accounting.rdp.RdpAccountant(orders=rdp.ORDERS)
    accountant.compose(dp_accounting.GaussianDpEvent(z), rounds)
    ours = rdp.rdp_to_epsilon(ALPHAS, rounds * _gaussian_rdp(z), delta)
    assert ours == pytest.approx(accountant.get_epsilon(delta), rel=1e-6)


def test_rdp_to_epsilon_with_fractional_orders_matches_dp_accounting():
    orders = dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    accountant = dp_accounting.rdp.RdpAccountant(orders=orders)
    accountant.compose(dp_accounting.GaussianDpEvent(1.3), 40)
    ours = rdp.rdp_to_epsilon(orders, 40 * np.asarray(orders) / (2 * 1.3**2), 1e-5)
    assert ours == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-6)


def test_rdp_to_epsilon_small_rdp_gives_zero():
    assert rdp.rdp_to_epsilon(ALPHAS, np.full_like(ALPHAS, 1e-12), 1e-5) == 0.0


# ---------------------------------------------------------------- monotonicity


def test_more_bits_give_smaller_epsilon():
    for mechanism in (dd.ddg_epsilon, dd.skellam_epsilon):
        eps = [mechanism(**_setting(bits), rounds=10) for bits in (10, 12, 14, 16)]
        assert all(a > b for a, b in zip(eps, eps[1:]))


def test_more_noise_gives_smaller_epsilon():
    for mechanism in (dd.ddg_epsilon, dd.skellam_epsilon):
        for sampling_rate in (1.0, 0.05):
            eps = [mechanism(**_setting(14, z), rounds=10, sampling_rate=sampling_rate) for z in (0.5, 1.0, 2.0)]
            assert all(a > b for a, b in zip(eps, eps[1:]))


def test_fewer_clients_sampled_and_fewer_rounds_give_smaller_epsilon():
    setting = _setting(14)
    by_rate = [dd.ddg_epsilon(**setting, rounds=10, sampling_rate=q) for q in (1.0, 0.1, 0.01)]
    assert all(a > b for a, b in zip(by_rate, by_rate[1:]))
    by_rounds = [dd.ddg_epsilon(**setting, rounds=t, sampling_rate=0.1) for t in (100, 10, 1)]
    assert all(a > b for a, b in zip(by_rounds, by_rounds[1:]))
    assert dd.ddg_epsilon(**setting, rounds=0) == 0.0


# ---------------------------------------------------------------- bad inputs


def test_too_few_bits_raise_with_the_fix():
    with pytest.raises(ConfigurationError, match="more bits.*fewer clients"):
        dd.heuristic_scale(6, 100, DIM, CLIP, LOCAL_STDDEV, 3.89)  # 6 < log2(100)
    with pytest.raises(ConfigurationError, match="more bits.*fewer clients"):
        dd.heuristic_scale(2, 4, DIM, CLIP, LOCAL_STDDEV, 3.89)  # 2^4 <= 4 * 3.89^2


@pytest.mark.parametrize(
    "call",
    [
        lambda: dd.modclip_k(0.0),
        lambda: dd.modclip_k(1.0),
        lambda: dd.inflated_l2(1.0, 10.0, 100, 1.0),
        lambda: dd.inflated_l2(1.0, 0.0, 100, 0.5),
        lambda: dd.inflated_l2(1.0, 10.0, 0, 0.5),
        lambda: dd.inflated_l1(-1.0, 10),
        lambda: dd.heuristic_scale(0, 10, 100, 1.0, 0.1, 3.0),
        lambda: dd.heuristic_scale(16, 10, 100, 0.0, 0.1, 3.0),
        lambda: dd.heuristic_scale(16.5, 10, 100, 1.0, 0.1, 3.0),
        lambda: dd.ddg_rdp(ALPHAS, 1.0, 1.0, 0.3, 10, 100),
        lambda: dd.ddg_rdp([1.0, 2.0], 1.0, 1.0, 1.0, 10, 100),
        lambda: dd.ddg_rdp(ALPHAS, float("nan"), 1.0, 1.0, 10, 100),
        lambda: dd.skellam_rdp(ALPHAS, 1.0, 1.0, 0.0, 10.0),
        lambda: rdp.poisson_subsampled_rdp(1.5, _gaussian_rdp(1.0), ALPHAS),
        lambda: rdp.poisson_subsampled_rdp(0.1, [1.0, 2.0], [2.5, 3.0]),
        lambda: rdp.wor_subsampled_rdp(-0.1, _gaussian_rdp(1.0), ALPHAS),
        lambda: rdp.wor_subsampled_rdp(0.1, _gaussian_rdp(1.0)[:-1], ALPHAS),
        lambda: rdp.wor_subsampled_rdp(0.1, -_gaussian_rdp(1.0), ALPHAS),
        lambda: rdp.rdp_to_epsilon(ALPHAS, _gaussian_rdp(1.0), 0.0),
        lambda: rdp.rdp_to_epsilon(ALPHAS, _gaussian_rdp(1.0), 1.0),
        lambda: dd.ddg_epsilon(**_setting(12), rounds=1, sampling="shuffle"),
        lambda: dd.ddg_epsilon(**_setting(12), rounds=-1),
        lambda: dd.skellam_epsilon(**{**_setting(12), "local_stddev_scaled": 0.0}, rounds=1),
    ],
)
def test_bad_inputs_raise_configuration_error(call):
    with pytest.raises(ConfigurationError):
        call()
