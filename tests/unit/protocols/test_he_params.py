"""HeSum's parameter checks: 128-bit bounds, usable chains, plain modulus, CKKS scale and grid, capacity."""

import numpy as np
import pytest
import tenseal as ts
import tenseal.sealapi as sealapi

from secfl.exceptions import ConfigurationError
from secfl.protocols.he import HeSum
from secfl.protocols.he_messages import check_layout
from secfl.protocols.he_params import DEFAULT_PLAIN_MODULUS, MAX_LOG_Q_128, HeParams, new_context


def test_the_128_bit_table_is_seals():
    for n, limit in MAX_LOG_Q_128.items():
        assert sealapi.CoeffModulus.MaxBitCount(n, sealapi.SEC_LEVEL_TYPE.TC128) == limit


@pytest.mark.parametrize("n, chain, limit", [
    (8192, (60, 60, 60, 60), "218"),  # 240 bits
    (4096, (60, 60), "109"),  # 120 bits
    (2048, (30, 30), "54"),  # 60 bits
    (1024, (20, 20), "27"),
])
def test_chains_above_the_128_bit_bound_are_refused(n, chain, limit):
    for scheme in ("bfv", "ckks"):
        with pytest.raises(ConfigurationError, match=f"limit of {limit} bits"):
            HeSum(scheme, poly_modulus_degree=n, coeff_mod_bit_sizes=chain)


def test_a_single_prime_chain_is_refused():
    with pytest.raises(ConfigurationError, match="at least 2 primes"):
        HeSum("ckks", poly_modulus_degree=2048, coeff_mod_bit_sizes=[60])
    with pytest.raises(ConfigurationError, match="at least 2 primes"):
        HeSum(coeff_mod_bit_sizes=[54])


def test_a_chain_at_the_limit_is_accepted():
    he = HeSum("ckks", poly_modulus_degree=4096, coeff_mod_bit_sizes=[60, 49])
    assert he.parameters.log_q == 109
    assert HeSum("ckks", coeff_mod_bit_sizes=[60, 40, 40, 60]).parameters.log_q == 200  # TenSEAL's tutorial


@pytest.mark.parametrize("kwargs, match", [
    ({"scheme": "paillier"}, "scheme"),
    ({"poly_modulus_degree": 3000}, "poly_modulus_degree"),
    ({"coeff_mod_bit_sizes": [61, 40]}, "2..60"),
    ({"coeff_mod_bit_sizes": "60,40"}, "sequence"),
    ({"plain_modulus": 16385}, "prime"),  # = 1 mod 16384 but 5 x 29 x 113
    ({"plain_modulus": 68719230979}, "prime"),
    ({"plain_modulus": 1 << 61}, "prime"),
    ({"poly_modulus_degree": 16384, "coeff_mod_bit_sizes": [60, 40]}, "mod 32768"),  # t = 1 mod 16384 only
    ({"coeff_mod_bit_sizes": [40, 40]}, "noise budget"),  # 36-bit t against a 40-bit data prime
    ({"threads": 0}, "threads"),
    ({"bits": 63}, "bits"),
    ({"bits": True}, "bits"),
])
def test_bad_bfv_parameters_are_refused(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        HeSum(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"scale_bits": 60}, "smaller than the data prime"),
    ({"scale_bits": 61}, "smaller than the data prime"),
    ({"grid_bits": 21}, "grid_bits"),
    ({"grid_bits": -1}, "grid_bits"),
    ({"bits": 20}, "real values"),
])
def test_bad_ckks_parameters_are_refused(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        HeSum("ckks", **kwargs)


def test_ckks_cannot_be_configured_for_a_ring():
    with pytest.raises(ConfigurationError, match="real values"):
        HeSum("ckks").bind(bits=20)


def test_bind_returns_a_new_protocol_and_leaves_the_original_unchanged():
    he = HeSum()
    assert (he.input_kind, he.secure, he.accepts_packed, he.min_group_size) == ("ring", True, False, 2)
    assert HeSum("ckks").input_kind == "real"
    bound = he.bind(bits=20)
    assert bound is not he and isinstance(bound, HeSum)
    assert (bound.bits, bound.sum_fits) == (20, True) and (he.bits, he.sum_fits) == (None, False)
    assert he.bind(bits=None) is he  # nothing to bind: the same protocol
    assert he.for_ring(20).bits == 20  # the former name
    he.check_group_size(15)
    with pytest.raises(ConfigurationError, match=">= 2"):
        he.check_group_size(1)
    with pytest.raises(ConfigurationError, match="at most 15 clients"):
        he.check_group_size(16)  # unbound: any 32-bit words
    bound.check_group_size(16)  # bound: the ring stage's sums fit 20 bits


def test_the_default_plain_modulus_batches_at_8192():
    assert sealapi.Modulus(DEFAULT_PLAIN_MODULUS).is_prime() and DEFAULT_PLAIN_MODULUS % 16384 == 1
    assert DEFAULT_PLAIN_MODULUS.bit_length() == 36


def test_a_group_too_big_for_the_plain_modulus_is_refused():
    he = HeSum(bits=30)  # any 30-bit values: n x 2^29 must stay below t / 2
    assert he.params(63).max_group_size == 63  # 63 x 2^29 < t / 2 ~ 2^35
    with pytest.raises(ConfigurationError, match="plain_modulus"):
        he.params(64)
    ring = HeSum().bind(bits=30)  # a ring stage guarantees the sum fits 30 bits: only the noise budget limits
    assert ring.params(2048).max_group_size == ring.parameters.bfv_noise_max_group() >= 2048
    HeSum().bind(bits=35).params(2)  # 2^35 <= t - 1 (t is a 36-bit prime just below 2^36)
    with pytest.raises(ConfigurationError, match="plain modulus holds 35"):
        HeSum().bind(bits=36).params(2)
    words = HeSum()  # bits = the word size; the pipeline's params() call assumes uint32 (32 bits)
    words.params(15)
    with pytest.raises(ConfigurationError, match=r"at most 15 clients"):
        words.params(16)


def test_the_noise_budget_bounds_groups_of_tiny_values():
    he = HeSum(bits=1)
    budget = he.parameters.fresh_noise_budget()
    assert budget >= 14  # measured 16 at N = 8192, [60, 40], t 36 bits
    cap = he.parameters.bfv_noise_max_group()
    assert he.params(cap).max_group_size == cap == 2 ** (budget - 1)
    with pytest.raises(ConfigurationError, match="noise"):
        he.params(cap + 1)


def test_group_size_must_be_positive():
    with pytest.raises(ConfigurationError, match="group_size"):
        HeSum().params(0)


def test_ckks_capacity_and_tolerance():
    group = HeSum("ckks").params(10)
    assert group.max_abs_value == 2.0**17 / 10
    assert group.tolerance == pytest.approx(2.0**-21 + 10**0.5 * 2.0**-25)
    assert group.bits is None and group.max_group_size is None


@pytest.mark.parametrize("scheme, chain", [("bfv", (60, 40)), ("ckks", (60, 40)), ("ckks", (60, 40, 40, 60)),
                                           ("ckks", (60, 40, 40))])
def test_honest_vectors_fit_the_size_bounds_and_layout(scheme, chain):
    params = HeParams(scheme, 8192, chain, plain_modulus=DEFAULT_PLAIN_MODULUS if scheme == "bfv" else None,
                      scale_bits=None if scheme == "bfv" else 40, grid_bits=None if scheme == "bfv" else 20)
    context = new_context(params)
    d = 3 * params.slots + 5
    encrypt = ts.bfv_vector if scheme == "bfv" else ts.ckks_vector
    values = np.random.default_rng(0).integers(-1000, 1000, d).tolist()
    blob = encrypt(context, values).serialize()
    low, high = params.vector_bytes(d)
    assert low <= len(blob) <= high
    check_layout(blob, params=params, d=d)


def test_parameters_are_validated_once_per_set():
    a, b = HeSum(), HeSum()
    assert a.parameters == b.parameters and hash(a.parameters) == hash(b.parameters)
