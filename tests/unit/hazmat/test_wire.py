import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import MalformedMessageError
from secfl.hazmat import wire


@pytest.mark.parametrize("dtype", ["float32", "float64", "uint32", "uint64"])
def test_vector_round_trip(dtype):
    values = (np.arange(17) * 3).astype(dtype)
    out = wire.decode_vector(wire.encode_vector(values), length=17, dtype=dtype)
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, values)


def test_empty_vector_round_trips():
    assert wire.decode_vector(wire.encode_vector(np.zeros(0, np.float32))).size == 0


def test_every_truncation_is_malformed():
    message = wire.encode_vector(np.arange(5, dtype=np.float32))
    for cut in range(len(message)):
        with pytest.raises(MalformedMessageError):
            wire.decode_vector(message[:cut])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: b"XX" + m[2:],  # magic
        lambda m: m[:2] + bytes([9]) + m[3:],  # version
        lambda m: m[:3] + bytes([7]) + m[4:],  # kind
        lambda m: m + b"\x00",  # trailing byte
        lambda m: m[:8] + bytes([99]) + m[9:],  # dtype code
        lambda m: m[:9] + (6).to_bytes(4, "little") + m[13:],  # declared count too large
    ],
)
def test_mutations_are_malformed(mutate):
    message = wire.encode_vector(np.arange(5, dtype=np.float32))
    with pytest.raises(MalformedMessageError):
        wire.decode_vector(mutate(message))


def test_expected_length_dtype_and_cap_are_enforced():
    message = wire.encode_vector(np.arange(5, dtype=np.float32))
    with pytest.raises(MalformedMessageError, match="length"):
        wire.decode_vector(message, length=4)
    with pytest.raises(MalformedMessageError, match="dtype"):
        wire.decode_vector(message, dtype=np.uint32)
    with pytest.raises(MalformedMessageError, match="cap"):
        wire.decode_vector(message, max_bytes=len(message) - 1)
    with pytest.raises(MalformedMessageError):
        wire.decode_vector("not bytes")


def test_unsupported_arrays_are_refused():
    with pytest.raises(MalformedMessageError):
        wire.encode_vector(np.zeros((2, 2), np.float32))
    with pytest.raises(MalformedMessageError):
        wire.encode_vector(np.zeros(3, np.int8))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_never_crashes(data):
    try:
        wire.decode_vector(data)
    except MalformedMessageError:
        pass
