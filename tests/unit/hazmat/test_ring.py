import numpy as np
import pytest

from secfl.hazmat import ring


@pytest.mark.parametrize("bits", [1, 2, 8, 31, 62, 64])
def test_embed_lift_round_trip(bits):
    top = 2 ** (bits - 1) - 1 if bits < 64 else 2**62
    values = np.array([0, 1, -1, top, -top - (1 if bits < 64 else 0)], dtype=np.int64)
    if bits == 1:
        values = np.array([0, -1], dtype=np.int64)
    assert np.array_equal(ring.lift(ring.embed(values, bits), bits), values)


def test_bits_for_sum_is_tight():
    assert ring.bits_for_sum(1, 1) == 2  # values -1, 0, 1
    assert ring.bits_for_sum(3, 1) == 3  # 7 values
    assert ring.bits_for_sum(4, 1) == 4  # 9 values
    b = ring.bits_for_sum(1000, 10)
    assert 2**b >= 2 * 10 * 1000 + 1 > 2 ** (b - 1)


def test_sums_wrap_mod_2_64_and_lift_recovers():
    values = np.array([[-5, 7], [3, -9], [-1, 1]], dtype=np.int64)
    total = ring.ring_sum(ring.embed(values, 8))
    assert np.array_equal(ring.lift(total, 8), values.sum(0))


def test_lift_refuses_unsupported_bits():
    with pytest.raises(ValueError):
        ring.lift(np.zeros(1, np.uint64), 63)
