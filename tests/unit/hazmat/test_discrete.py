"""Tests of the discrete Gaussian and Skellam samplers in ``secfl.hazmat.discrete``.

Every statistical check either rejects at p < ALPHA = 1e-9 (chi-square) or allows 6 standard
errors (false-failure probability 2e-9), so the whole file fails by chance with probability below
1e-7. Sample sizes are chosen so that the checks have real power: the ``*_has_power`` tests show
that the same checks reject a 5% error in the scale and a rounded continuous Gaussian.
"""

from __future__ import annotations

import functools
import math
import warnings
from decimal import Decimal, getcontext
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from secfl.exceptions import ConfigurationError
from secfl.hazmat import csprng, discrete
from secfl.hazmat import skellam as poisson
from secfl.hazmat.discrete import discrete_gaussian, discrete_gaussian_exact
from secfl.hazmat.skellam import skellam

ALPHA = 1e-9  # chi-square rejection level
SE = 6.0  # tolerance in standard errors for moment checks
N_FAST = 200_000  # samples from the vectorised samplers
N_EXACT = 30_000  # samples from the (pure Python) exact sampler
N_DG = 1_000_000  # samples for the vectorised discrete Gaussian pmf checks (~0.1 s per million)
N_POISSON = 2_000_000  # samples for the PTRS checks (cheap: ~50 ms per million)


# ---------------------------------------------------------------- helpers


def _merge_cells(observed: np.ndarray, expected: np.ndarray, min_expected: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent cells left to right until each has expected count >= min_expected."""
    obs_out: list[float] = []
    exp_out: list[float] = []
    o = e = 0.0
    for oi, ei in zip(observed.tolist(), expected.tolist()):
        o += oi
        e += ei
        if e >= min_expected:
            obs_out.append(o)
            exp_out.append(e)
            o = e = 0.0
    obs_out[-1] += o
    exp_out[-1] += e
    return np.array(obs_out), np.array(exp_out)


def chi_square_p(samples, support: np.ndarray, pmf: np.ndarray) -> float:
    """p-value of Pearson's chi-square test of integer samples against pmf on consecutive support."""
    x = np.asarray(samples, dtype=np.int64)
    assert x.min() >= support[0] and x.max() <= support[-1], "sample outside a range of probability < 1e-300"
    assert abs(pmf.sum() - 1) < 1e-9
    observed = np.bincount(x - support[0], minlength=support.size)
    obs, exp = _merge_cells(observed, pmf * x.size, max(20.0, x.size / 200))
    return float(stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), obs.size - 1))


def binned_chi_square_p(samples, edges: np.ndarray, cdf_at_edges: np.ndarray) -> float:
    """Chi-square p-value on cells (-inf, e0], (e0, e1], ..., (e_last, inf) given P(X <= e_i)."""
    x = np.asarray(samples)
    observed = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    expected = np.diff(np.concatenate([[0.0], cdf_at_edges, [1.0]])) * x.size
    obs, exp = _merge_cells(observed, expected, 20.0)
    return float(stats.chi2.sf(((obs - exp) ** 2 / exp).sum(), obs.size - 1))


def two_sample_p(a, b) -> float:
    """p-value of the chi-square test that two integer samples come from the same law."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    lo = min(a.min(), b.min())
    size = max(a.max(), b.max()) - lo + 1
    ca, cb = np.bincount(a - lo, minlength=size), np.bincount(b - lo, minlength=size)
    share = min(a.size, b.size) / (a.size + b.size)  # cells get >= 20 expected in the smaller sample
    cells: list[tuple[int, int]] = []
    oa = ob = 0
    for xa, xb in zip(ca.tolist(), cb.tolist()):
        oa, ob = oa + xa, ob + xb
        if (oa + ob) * share >= 20:
            cells.append((oa, ob))
            oa = ob = 0
    cells[-1] = (cells[-1][0] + oa, cells[-1][1] + ob)
    return float(stats.chi2_contingency(np.array(cells).T, correction=False).pvalue)


def gaussian_support(sigma: float) -> np.ndarray:
    """Integers with |x| <= 40 sigma + 10: the rest has mass below exp(-800)."""
    r = math.ceil(40 * sigma) + 10
    return np.arange(-r, r + 1)


def gaussian_pmf(sigma2: float, support: np.ndarray) -> np.ndarray:
    """The discrete Gaussian pmf, normalised exp(-x^2 / (2 sigma2)) over the support."""
    w = np.exp(-(support.astype(np.float64) ** 2) / (2.0 * sigma2))
    return w / w.sum()


@functools.lru_cache(maxsize=None)
def exact_samples(sigma2: Fraction) -> tuple[int, ...]:
    """N_EXACT exact samples, shared by the tests that need them (the sampler is slow)."""
    return tuple(discrete_gaussian_exact(sigma2, N_EXACT))


# ---------------------------------------------------------------- exact sampler


@pytest.mark.parametrize("sigma2", [Fraction(1, 2), Fraction(2), Fraction(9)])
def test_exact_sampler_matches_the_discrete_gaussian_pmf(sigma2):
    x = exact_samples(sigma2)
    assert all(type(v) is int for v in x[:100])
    support = gaussian_support(math.sqrt(sigma2))
    assert chi_square_p(x, support, gaussian_pmf(float(sigma2), support)) > ALPHA


def test_exact_sampler_edge_cases():
    assert discrete_gaussian_exact(0, 5) == [0, 0, 0, 0, 0]
    assert discrete_gaussian_exact(Fraction(9), 0) == []
    assert len(discrete_gaussian_exact(4, 3)) == 3
    huge = discrete_gaussian_exact(Fraction(2**80), 3)  # the largest scale still works
    assert all(abs(v) < 40 * 2**40 for v in huge)


def test_exact_bernoulli_exp_frequencies():
    bits = discrete._RandomBits()
    n = 20_000
    for num, den in [(0, 1), (1, 3), (1, 1), (7, 2)]:
        hits = sum(discrete._bernoulli_exp(bits, num, den) for _ in range(n))
        p = math.exp(-num / den)
        assert abs(hits / n - p) <= SE * math.sqrt(p * (1 - p) / n)


# ---------------------------------------------------------------- vectorised discrete Gaussian


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0, 50.0])
def test_vectorised_sampler_matches_the_discrete_gaussian_pmf(sigma):
    # With N_DG samples a 2% error in the rate of the geometric proposal is caught at every sigma.
    x = discrete_gaussian(sigma, N_DG)
    assert x.dtype == np.int64 and x.shape == (N_DG,)
    support = gaussian_support(sigma)
    assert chi_square_p(x, support, gaussian_pmf(sigma**2, support)) > ALPHA


def test_vectorised_sampler_moments_and_pmf_at_sigma_1000():
    sigma = 1000.0
    x = discrete_gaussian(sigma, N_DG)
    # For sigma >= 1 the variance is sigma^2 up to exp(-2 pi^2 sigma^2): exact here.
    assert abs(x.mean()) <= SE * sigma / math.sqrt(N_DG)
    assert abs(x.var() / sigma**2 - 1) <= SE * math.sqrt(2 / N_DG)
    support = gaussian_support(sigma)
    assert chi_square_p(x, support, gaussian_pmf(sigma**2, support)) > ALPHA


def test_vectorised_sampler_at_the_largest_sigma():
    sigma = discrete.MAX_SIGMA
    x = discrete_gaussian(sigma, N_FAST)
    edges = np.round(sigma * np.linspace(-4.5, 4.5, 91)).astype(np.int64)
    # At this scale the discrete Gaussian cdf is Phi((e + 1/2) / sigma) to far below 1e-15.
    assert binned_chi_square_p(x, edges, stats.norm.cdf((edges + 0.5) / sigma)) > ALPHA


@pytest.mark.parametrize("sigma2", [Fraction(1, 2), Fraction(2), Fraction(9)])
def test_vectorised_and_exact_samplers_agree(sigma2):
    fast = discrete_gaussian(math.sqrt(sigma2), N_FAST)
    assert two_sample_p(exact_samples(sigma2), fast) > ALPHA


def test_vectorised_sampler_tiny_and_zero_sigma():
    assert np.array_equal(discrete_gaussian(0.0, 4), np.zeros(4, dtype=np.int64))
    assert discrete_gaussian(0, 4).dtype == np.int64
    assert discrete_gaussian(2.0, 0).shape == (0,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / NaN warnings when sigma^2 underflows
        assert not discrete_gaussian(1e-300, 1000).any()
        assert not discrete_gaussian(5e-324, 1000).any()


def test_geometric_inverse_cdf_boundaries_are_within_one_grid_step():
    # Find, for every k, the first 53-bit uniform m * 2^-53 that maps to >= k, by bisection (the map
    # is monotone), and compare it with the exact threshold 1 - e^-k computed to 50 digits.
    getcontext().prec = 50
    ks = np.arange(1, 37)
    lo, hi = np.zeros(ks.size, dtype=np.int64), np.full(ks.size, 2**53, dtype=np.int64)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        above = discrete._geometric_e1(mid.astype(np.float64) * 2.0**-53) >= ks
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    for m, k in zip(hi.tolist(), ks.tolist()):
        exact = (1 - Decimal(-k).exp()) * Decimal(2**53)
        assert abs(Decimal(m) - exact) <= 1, (k, m, exact)
    assert discrete._geometric_e1(np.array([0.0, 1 - 2.0**-53])).tolist() == [0, 36]


# ---------------------------------------------------------------- Poisson and Skellam


@pytest.mark.parametrize("mu", [0.5, 4.0, 20.0, 50.0, 5000.0])
def test_skellam_matches_scipy_pmf(mu):
    x = skellam(mu, N_FAST)
    assert x.dtype == np.int64 and x.shape == (N_FAST,)
    r = math.ceil(40 * math.sqrt(mu)) + 40
    support = np.arange(-r, r + 1)
    assert chi_square_p(x, support, stats.skellam.pmf(support, mu / 2, mu / 2)) > ALPHA


@pytest.mark.parametrize("lam", [0.25, 9.999, 10.0, 25.0, 2500.0, 1e6])
def test_poisson_component_matches_scipy_pmf(lam):
    # Inversion below 10, PTRS from 10 on: both sides of the switch and a large lambda. PTRS errors
    # hide well (rejection partly repairs a wrong hat), so it gets 10x the samples: with them a
    # shift of the hat by 1/2 or a wrong squeeze constant v_r is caught at lambda = 10 or 2500.
    x = poisson._poisson(lam, N_FAST if lam < 10 else N_POISSON)
    support = np.arange(max(0, math.floor(lam - 40 * math.sqrt(lam)) - 40), math.ceil(lam + 40 * math.sqrt(lam)) + 40)
    pmf = stats.poisson.pmf(support, lam)
    assert chi_square_p(x, support, pmf / pmf.sum()) > ALPHA


def test_poisson_at_the_largest_lambda():
    lam = poisson.MAX_SKELLAM_MU / 2
    x = poisson._poisson(lam, N_FAST)
    assert abs(x.mean() - lam) <= SE * math.sqrt(lam / N_FAST)
    assert abs(x.var() / lam - 1) <= SE * math.sqrt(2 / N_FAST)
    edges = np.round(lam + math.sqrt(lam) * np.linspace(-4.5, 4.5, 91)).astype(np.int64)
    assert binned_chi_square_p(x, edges, stats.poisson.cdf(edges, lam)) > ALPHA


def test_skellam_variance_at_mu_2e6():
    mu = 2e6
    x = skellam(mu, N_FAST)
    assert abs(x.mean()) <= SE * math.sqrt(mu / N_FAST)
    assert abs(x.var() / mu - 1) <= SE * math.sqrt(2 / N_FAST)


def test_poisson_log_pmf_against_high_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for lam in [10.0, 37.5, 2500.0, 1e6, 2.0**47 + 0.375]:
        k = np.unique(np.round(lam + np.linspace(-37, 37, 149) * math.sqrt(lam)).clip(0)).astype(np.int64)
        ours = poisson._poisson_log_pmf(k, lam)
        big = mpmath.mpf(lam)
        exact = np.array([float(-big + int(j) * mpmath.log(big) - mpmath.loggamma(int(j) + 1)) for j in k])
        assert np.all(np.abs(ours - exact) <= 1e-12 * np.maximum(1.0, np.abs(exact))), lam


def test_skellam_zero_and_empty():
    assert np.array_equal(skellam(0.0, 5), np.zeros(5, dtype=np.int64))
    assert skellam(0, 5).dtype == np.int64
    assert skellam(3.0, 0).shape == (0,)


# ---------------------------------------------------------------- symmetry and freshness


@pytest.mark.parametrize("draw", [lambda n: discrete_gaussian(3.0, n), lambda n: skellam(4.0, n),
                                  lambda n: skellam(5000.0, n)])
def test_outputs_are_symmetric_int64(draw):
    x = draw(N_FAST)
    assert x.dtype == np.int64
    pos, neg = int((x > 0).sum()), int((x < 0).sum())
    assert abs(pos - neg) <= SE * math.sqrt(pos + neg)  # P(x > 0) = P(x < 0)
    magnitudes = np.abs(x)
    assert abs(magnitudes[x > 0].mean() - magnitudes[x < 0].mean()) <= SE * magnitudes.std() * math.sqrt(
        1 / pos + 1 / neg)


def test_two_calls_give_fresh_noise_whatever_the_numpy_seed():
    np.random.seed(0)
    a = discrete_gaussian(50.0, 64)
    np.random.seed(0)
    b = discrete_gaussian(50.0, 64)
    assert not np.array_equal(a, b)
    np.random.seed(0)
    c = skellam(5000.0, 64)
    np.random.seed(0)
    assert not np.array_equal(c, skellam(5000.0, 64))
    assert discrete_gaussian_exact(Fraction(9), 64) != discrete_gaussian_exact(Fraction(9), 64)


# ---------------------------------------------------------------- the checks have power


def test_pmf_check_has_power():
    support = gaussian_support(3.0)
    pmf = gaussian_pmf(9.0, support)
    assert chi_square_p(discrete_gaussian(3.0 * 1.05, N_FAST), support, pmf) < ALPHA  # 5% wrong scale
    small = gaussian_support(0.5)
    rounded = np.rint(0.5 * csprng.normal(N_FAST)).astype(np.int64)  # rounded continuous Gaussian
    assert chi_square_p(rounded, small, gaussian_pmf(0.25, small)) < ALPHA
    lam_support = np.arange(0, 200)
    pmf25 = stats.poisson.pmf(lam_support, 25.0)
    assert chi_square_p(poisson._poisson(25.0 * 1.05, N_FAST), lam_support, pmf25 / pmf25.sum()) < ALPHA


def test_two_sample_check_has_power():
    assert two_sample_p(exact_samples(Fraction(9)), discrete_gaussian(3.0 * 1.15, N_FAST)) < ALPHA


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("bad", [-1.0, -1e-300, float("nan"), float("inf"), -float("inf"), "1", None, True, 1j])
def test_bad_scales_are_refused(bad):
    with pytest.raises(ConfigurationError):
        discrete_gaussian(bad, 4)
    with pytest.raises(ConfigurationError):
        skellam(bad, 4)


def test_scale_limits():
    assert discrete_gaussian(discrete.MAX_SIGMA, 2).shape == (2,)
    assert skellam(poisson.MAX_SKELLAM_MU, 2).shape == (2,)
    with pytest.raises(ConfigurationError, match="maximum"):
        discrete_gaussian(2.0**41, 2)
    with pytest.raises(ConfigurationError, match="maximum"):
        skellam(2.0**49, 2)
    with pytest.raises(ConfigurationError, match="maximum"):
        discrete_gaussian_exact(Fraction(2**80) + Fraction(1, 3), 2)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None])
def test_bad_sizes_are_refused(bad):
    for call in (lambda: discrete_gaussian(1.0, bad), lambda: skellam(1.0, bad),
                 lambda: discrete_gaussian_exact(Fraction(1), bad)):
        with pytest.raises(ConfigurationError, match="size"):
            call()


@pytest.mark.parametrize("bad", [0.5, -1, Fraction(-1, 2), True, "2", None, float("nan")])
def test_bad_exact_variances_are_refused(bad):
    with pytest.raises(ConfigurationError, match="sigma2"):
        discrete_gaussian_exact(bad, 2)


def test_errors_are_value_errors():
    with pytest.raises(ValueError):
        discrete_gaussian(-1.0, 2)
    assert discrete_gaussian_exact(np.int64(4), 1)[0] is not None  # numpy integers are exact too
