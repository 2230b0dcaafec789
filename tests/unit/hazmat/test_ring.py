import numpy as np
import pytest

from secfl.hazmat import ring


def residues(values, bits):
    """Two's-complement residues mod 2^b in the word ring.word_dtype(b)."""
    mask = (1 << bits) - 1
    return np.array([v & mask for v in values], dtype=np.uint64).astype(ring.word_dtype(bits))


@pytest.mark.parametrize("bits", [1, 2, 8, 31, 32, 33, 62, 64])
def test_lift_recovers_signed_values(bits):
    top = 2 ** (bits - 1) - 1 if bits < 64 else 2**62
    values = [0, 1, -1, top, -top - (1 if bits < 64 else 0)] if bits > 1 else [0, -1]
    assert np.array_equal(ring.lift(residues(values, bits), bits), np.array(values, dtype=np.int64))


def test_bits_for_sum_is_tight():
    assert ring.bits_for_sum(1, 1) == 2  # values -1, 0, 1
    assert ring.bits_for_sum(3, 1) == 3  # 7 values
    assert ring.bits_for_sum(4, 1) == 4  # 9 values
    b = ring.bits_for_sum(1000, 10)
    assert 2**b >= 2 * 10 * 1000 + 1 > 2 ** (b - 1)


def test_sums_wrap_mod_2_64_and_lift_recovers():
    values = np.array([[-5, 7], [3, -9], [-1, 1]], dtype=np.int64)
    total = ring.ring_sum(np.stack([residues(row, 8) for row in values.tolist()]))
    assert total.dtype == np.uint32
    assert np.array_equal(ring.lift(total, 8), values.sum(0))


def test_lift_refuses_unsupported_bits():
    with pytest.raises(ValueError):
        ring.lift(np.zeros(1, np.uint64), 63)
