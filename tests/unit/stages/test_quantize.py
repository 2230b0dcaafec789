import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.hazmat import ring
from secfl.hazmat.ring import ring_sum
from secfl.stages import Quantize
from secfl.types import Bounds, Update


def test_bits_are_derived_from_bound_scale_and_group_size():
    stage = Quantize(scale=2**10).bind(bound_in=Bounds(linf=1.0, l2=1.0), group_size=8)
    # sums lie in [-8 * 1024, 8 * 1024]: 16,385 values -> 15 bits
    assert stage.bits == 15
    assert stage.measurements()["quantize/bits"] == 15


def test_forced_bits_too_small_is_refused_with_the_fix():
    with pytest.raises(IncompatibleStagesError, match="needs 15 bits"):
        Quantize(scale=2**10, bits=14).bind(bound_in=Bounds(linf=1.0, l2=1.0), group_size=8)
    assert Quantize(scale=2**10, bits=20).bind(bound_in=Bounds(linf=1.0), group_size=8).bits == 20


def test_unbounded_input_and_too_many_bits_are_refused():
    with pytest.raises(IncompatibleStagesError, match="L2Clip"):
        Quantize().bind(bound_in=Bounds.UNBOUNDED, group_size=2)
    with pytest.raises(IncompatibleStagesError, match="lower the scale"):
        Quantize(scale=2.0**60).bind(bound_in=Bounds(linf=10.0), group_size=100)


def test_unbound_stage_explains_itself():
    with pytest.raises(ConfigurationError, match="Pipeline"):
        Quantize().encode(Update(0, np.zeros(2, np.float32)), rng=np.random.default_rng(0))


def test_values_are_clamped_and_sums_decode_exactly_up_to_rounding(rng):
    stage = Quantize(scale=2**8, bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=5)
    rows = [rng.uniform(-1.5, 1.5, 50).astype(np.float32) for _ in range(5)]
    encoded = [stage.encode(Update(i, r), rng=rng).values for i, r in enumerate(rows)]
    assert all(e.dtype == np.uint32 and np.all(e < 2**stage.bits) for e in encoded)
    decoded = stage.decode(ring_sum(np.stack(encoded)), count=5)
    exact = np.clip(np.stack(rows), -1, 1).sum(0)
    assert np.max(np.abs(decoded - exact)) < 5 / 2**8


def test_stochastic_rounding_is_unbiased():
    stage = Quantize(scale=1.0, bound=10.0).bind(bound_in=Bounds.UNBOUNDED, group_size=1)
    rng = np.random.default_rng(0)
    out = stage.decode(stage.encode(Update(0, np.full(200_000, 0.3, np.float32)), rng=rng).values, count=1)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert abs(out.mean() - 0.3) < 6 * np.sqrt(0.21 / 200_000)


def test_decode_refuses_larger_groups_than_sized_for():
    stage = Quantize(bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=2)
    with pytest.raises(IncompatibleStagesError):
        stage.decode(np.zeros(3, np.uint64), count=3)


@pytest.mark.parametrize("kwargs", [{"scale": 0}, {"bits": 0}, {"bits": 63}, {"bits": 8.0}, {"bound": -1}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        Quantize(**kwargs)


def test_word_size_follows_the_bits(rng):
    small = Quantize(scale=2**10, bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=4)
    large = Quantize(scale=2**40, bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=4)
    x = Update(0, np.array([-1.0, 0.5, 1.0], np.float32))
    assert small.encode(x, rng=rng).values.dtype == np.uint32 and small.bits <= 32
    out = large.encode(x, rng=rng).values
    assert out.dtype == np.uint64 and large.bits > 32
    assert np.allclose(large.decode(out, count=1), [-1.0, 0.5, 1.0], atol=2**-40)


class _FixedUniforms:
    """A stand-in Generator whose bit generator yields one raw 64-bit word over and over."""

    def __init__(self, u32: int) -> None:
        word = np.uint64(u32) | (np.uint64(u32) << np.uint64(32))
        self.bit_generator = type("Raw", (), {"random_raw": staticmethod(lambda n: np.full(n, word, np.uint64))})()


def test_rounding_threshold_is_the_fractional_part_in_32_bit_fixed_point():
    # y = 0.25, -0.5, 12.25: each rounds up exactly when u / 2^32 >= 1 - frac(y)
    stage = Quantize(scale=4.0, bound=100.0).bind(bound_in=Bounds.UNBOUNDED, group_size=1)
    x = Update(0, np.array([0.0625, -0.125, 3.0625], np.float32))

    def lifted(u):
        return [int(w) for w in ring.lift(stage.encode(x, rng=_FixedUniforms(u)).values, stage.bits)]

    assert lifted(0) == lifted(2**31 - 1) == [0, -1, 12]
    assert lifted(2**31) == lifted(3 * 2**30 - 1) == [0, 0, 12]
    assert lifted(3 * 2**30) == lifted(2**32 - 1) == [1, 0, 13]


@pytest.mark.parametrize("scale,bound,group", [(2.0**18, 8.0, 100), (2.0**18, 8.0, 1), (2.0**30, 1.0, 1),
                                               (1.0, 2.0**31 - 1, 1), (3.0, 12345.678, 7), (2.0**40, 1.0, 4),
                                               (2.0**52, 2.0**7, 1)])
def test_encoded_integers_never_leave_the_clamped_range_even_at_extreme_uniforms(scale, bound, group):
    stage = Quantize(scale=scale, bound=bound).bind(bound_in=Bounds.UNBOUNDED, group_size=group)
    top = math.ceil(bound * scale)
    x = np.array([bound, -bound, 2 * bound, -2 * bound, np.inf, -np.inf, np.nextafter(bound, 0),
                  bound * (1 - 2**-30), 0.0], np.float64)
    for u in (0, 1, 2**31, 2**32 - 2, 2**32 - 1):
        got = ring.lift(stage.encode(Update(0, x), rng=_FixedUniforms(u)).values, stage.bits)
        assert got.min() >= -top and got.max() <= top, (u, got, top)
    assert ring.lift(stage.encode(Update(0, x[:2]), rng=_FixedUniforms(0)).values, stage.bits)[1] == -top


@settings(max_examples=25, deadline=None)
@given(frac=st.floats(0.0, 1.0, exclude_max=True), whole=st.integers(-1000, 1000),
       scale=st.sampled_from([1.0, 3.0, 2.0**-3, 2.0**10, 2.0**18]), seed=st.integers(0, 2**32))
def test_stochastic_rounding_is_unbiased_property(frac, whole, scale, seed):
    value = (whole + frac) / scale
    stage = Quantize(scale=scale, bound=2000.0 / scale).bind(bound_in=Bounds.UNBOUNDED, group_size=2)
    n = 20_000
    words = stage.encode(Update(0, np.full(n, value, np.float64)), rng=np.random.default_rng(seed)).values
    got = ring.lift(words, stage.bits)
    y = value * scale
    assert set(np.unique(got)) <= {math.floor(y), math.floor(y) + 1}
    p = y - math.floor(y)
    assert abs((got - math.floor(y)).mean() - p) <= 6 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_same_seed_same_words_and_the_draws_come_from_rng():
    stage = Quantize(scale=2**10, bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=4)
    x = Update(0, np.random.default_rng(5).uniform(-1, 1, 200_001).astype(np.float32))
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(stage.encode(x, rng=a).values, stage.encode(x, rng=b).values)
    assert a.bit_generator.state == b.bit_generator.state
    assert not np.array_equal(stage.encode(x, rng=a).values, stage.encode(x, rng=np.random.default_rng(8)).values)


@pytest.mark.parametrize("spread", [0.5, 3.0])  # all inside the bound (clip skipped), and many clamped
def test_words_are_floor_of_clamped_scaled_value_plus_the_generators_uniform(spread):
    stage = Quantize(scale=3.0 * 2**12, bound=1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=3)
    x = np.random.default_rng(2).normal(0, spread, 600_001).astype(np.float32)  # 3 blocks, odd
    words = stage.encode(Update(0, x), rng=np.random.default_rng(9)).values
    u = np.random.default_rng(9).bit_generator.random_raw(300_001).view(np.uint32)[:x.size].astype(np.float64)
    y = np.clip(x.astype(np.float64), -1.0, 1.0) * stage.scale
    want = np.floor(y + u / 2**32)  # the float64 sum's rounding aside, which these magnitudes do not reach
    assert np.array_equal(ring.lift(words, stage.bits), want.astype(np.int64))
