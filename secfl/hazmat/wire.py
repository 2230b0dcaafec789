"""Versioned, length-prefixed, size-capped wire format for every message a protocol sends.

Frame: ``b"SF" | version u8 | kind u8 | length u32 LE | payload``. Every decoder turns garbage,
truncation, trailing bytes or oversize into ``MalformedMessageError``; none may crash or hang.
"""

from __future__ import annotations

import struct

import numpy as np

from secfl.exceptions import MalformedMessageError

MAGIC = b"SF"
VERSION = 1
MAX_MESSAGE_BYTES = 1 << 30  # 1 GiB: no honest message of secfl comes near it
_HEADER = struct.Struct("<2sBBI")

KIND_VECTOR = 1

_DTYPES = {1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<u4"), 4: np.dtype("<u8")}
_CODES = {dt: code for code, dt in _DTYPES.items()}
_VECTOR_HEAD = struct.Struct("<BI")


def frame(kind: int, payload: bytes) -> bytes:
    """Wrap ``payload`` in a header naming the message kind and its length."""
    if len(payload) > MAX_MESSAGE_BYTES - _HEADER.size:
        raise MalformedMessageError("message too large to send")
    return _HEADER.pack(MAGIC, VERSION, kind, len(payload)) + payload


def view(data: object) -> memoryview:
    """Any bytes-like object (bytes, bytearray, memoryview of any shape or stride) as a flat byte view.

    Raises:
        MalformedMessageError: ``data`` does not support the buffer protocol (str, int, None, ...).
    """
    if isinstance(data, str):
        raise MalformedMessageError("expected bytes, got str")
    try:
        buffer = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise MalformedMessageError(f"expected bytes, got {type(data).__name__}") from None
    if not buffer.c_contiguous:
        buffer = memoryview(buffer.tobytes())
    return buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer


def unframe(data: bytes, *, kind: int, max_bytes: int = MAX_MESSAGE_BYTES) -> memoryview:
    """Check the header of ``data`` and return its payload (a zero-copy view).

    Raises:
        MalformedMessageError: wrong type, magic, version or kind, truncated, trailing bytes, or
            larger than ``max_bytes``.
    """
    data = view(data)
    if len(data) > max_bytes:
        raise MalformedMessageError(f"message of {len(data)} bytes exceeds the cap of {max_bytes}")
    if len(data) < _HEADER.size:
        raise MalformedMessageError("truncated header")
    magic, version, got_kind, length = _HEADER.unpack_from(data)
    if bytes(magic) != MAGIC:
        raise MalformedMessageError("bad magic")
    if version != VERSION:
        raise MalformedMessageError(f"unsupported wire version {version}")
    if got_kind != kind:
        raise MalformedMessageError(f"unexpected message kind {got_kind}, expected {kind}")
    if length != len(data) - _HEADER.size:
        raise MalformedMessageError("length prefix does not match the message size")
    return data[_HEADER.size :]


def encode_vector(values: np.ndarray) -> bytes:
    """Serialise a 1-D float32/float64/uint32/uint64 array (little-endian)."""
    arr = np.asarray(values)
    dtype = arr.dtype.newbyteorder("<")
    if arr.ndim != 1 or dtype not in _CODES:
        raise MalformedMessageError(f"cannot encode an array of shape {arr.shape} and dtype {arr.dtype}")
    body = np.ascontiguousarray(arr, dtype=dtype).tobytes()
    return frame(KIND_VECTOR, _VECTOR_HEAD.pack(_CODES[dtype], arr.size) + body)


def decode_vector(
    data: bytes, *, length: int | None = None, dtype: np.dtype | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> np.ndarray:
    """Parse a vector message, optionally checking its length and dtype.

    Raises:
        MalformedMessageError: anything that is not exactly one well-formed vector of the
            expected shape and type.
    """
    payload = unframe(data, kind=KIND_VECTOR, max_bytes=max_bytes)
    if len(payload) < _VECTOR_HEAD.size:
        raise MalformedMessageError("truncated vector header")
    code, count = _VECTOR_HEAD.unpack_from(payload)
    if code not in _DTYPES:
        raise MalformedMessageError(f"unknown dtype code {code}")
    got = _DTYPES[code]
    body = payload[_VECTOR_HEAD.size :]
    if len(body) != count * got.itemsize:
        raise MalformedMessageError("vector body does not match its declared length")
    if length is not None and count != length:
        raise MalformedMessageError(f"vector of length {count}, expected {length}")
    if dtype is not None and got != np.dtype(dtype).newbyteorder("<"):
        raise MalformedMessageError(f"vector of dtype {got}, expected {np.dtype(dtype)}")
    return np.frombuffer(body, dtype=got).astype(got.newbyteorder("="))
