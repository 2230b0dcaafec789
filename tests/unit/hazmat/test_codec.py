import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import MalformedMessageError
from secfl.hazmat.codec import Reader, Writer


def test_round_trip_of_every_field():
    words = np.arange(5, dtype=np.uint32)
    payload = Writer().u8(7).u32(70000).u64(2**40).raw(b"ab").blob(b"xyz").ids([3, 1]).words(words).payload()
    r = Reader(payload)
    assert (r.u8(), r.u32(), r.u64(), r.raw(2), r.blob(max_size=3), r.ids(max_count=2)) == (7, 70000, 2**40, b"ab", b"xyz", (3, 1))
    assert np.array_equal(r.words(length=5, itemsize=4), words)
    r.done()


def test_bounds_are_enforced_before_allocation():
    with pytest.raises(MalformedMessageError, match="cap"):
        Reader(Writer().blob(b"xyz").payload()).blob(max_size=2)
    with pytest.raises(MalformedMessageError, match="count"):
        Reader(Writer().u32(2**31).payload()).ids(max_count=2**32)
    with pytest.raises(MalformedMessageError, match="count"):
        Reader(Writer().ids([1, 2, 3]).payload()).ids(max_count=2)
    with pytest.raises(MalformedMessageError, match="trailing"):
        Reader(b"\x00").done()
    with pytest.raises(MalformedMessageError, match="expected 4 x 4"):
        Reader(Writer().words(np.zeros(5, np.uint32)).payload()).words(length=4, itemsize=4)
    with pytest.raises(MalformedMessageError):
        Writer().words(np.zeros(3, np.float32))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_garbage_only_ever_raises_malformed(data):
    r = Reader(data)
    try:
        r.ids(max_count=8)
        r.blob(max_size=16)
        r.words(length=2, itemsize=8)
        r.done()
    except MalformedMessageError:
        pass
