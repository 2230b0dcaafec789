import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
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
