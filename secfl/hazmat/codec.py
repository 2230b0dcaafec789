"""Field-level encoding inside a wire frame: little-endian integers, length-prefixed bytes, id lists, vectors.

Every read is bounds-checked; running off the end, a count larger than what is left, or trailing
bytes raise ``MalformedMessageError``. Counts are checked against the bytes that remain before any
allocation, so a hostile length cannot make the reader allocate or loop beyond the message size.
"""

from __future__ import annotations

import struct

import numpy as np

from secfl.exceptions import MalformedMessageError

_U8, _U32, _U64 = struct.Struct("<B"), struct.Struct("<I"), struct.Struct("<Q")
_WORDS = {4: np.dtype("<u4"), 8: np.dtype("<u8")}


class Writer:
    """Append fields to a payload."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, value: int) -> Writer:
        self._parts.append(_U8.pack(value))
        return self

    def u32(self, value: int) -> Writer:
        self._parts.append(_U32.pack(value))
        return self

    def u64(self, value: int) -> Writer:
        self._parts.append(_U64.pack(value))
        return self

    def raw(self, data: bytes) -> Writer:
        """Fixed-size bytes (the reader must know the size)."""
        self._parts.append(bytes(data))
        return self

    def blob(self, data: bytes) -> Writer:
        """Variable-size bytes with a u32 length prefix."""
        return self.u32(len(data)).raw(data)

    def ids(self, values: list[int] | tuple[int, ...]) -> Writer:
        self.u32(len(values))
        for value in values:
            self.u32(value)
        return self

    def words(self, array: np.ndarray) -> Writer:
        """A uint32/uint64 vector: itemsize u8, count u32, little-endian words."""
        dtype = _WORDS.get(array.dtype.itemsize) if array.dtype.kind == "u" else None
        if dtype is None or array.ndim != 1:
            raise MalformedMessageError(f"cannot encode words of dtype {array.dtype} and shape {array.shape}")
        return self.u8(array.dtype.itemsize).u32(array.size).raw(np.ascontiguousarray(array, dtype=dtype).tobytes())

    def payload(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    """Consume fields from a payload; ``done()`` checks that nothing is left."""

    def __init__(self, payload: bytes) -> None:
        self._data = memoryview(payload)
        self._pos = 0

    def _take(self, size: int) -> memoryview:
        if size < 0 or self._pos + size > len(self._data):
            raise MalformedMessageError("message truncated")
        chunk = self._data[self._pos : self._pos + size]
        self._pos += size
        return chunk

    def u8(self) -> int:
        return _U8.unpack(self._take(1))[0]

    def u32(self) -> int:
        return _U32.unpack(self._take(4))[0]

    def u64(self) -> int:
        return _U64.unpack(self._take(8))[0]

    def raw(self, size: int) -> bytes:
        return bytes(self._take(size))

    def blob(self, *, max_size: int) -> bytes:
        size = self.u32()
        if size > max_size:
            raise MalformedMessageError(f"field of {size} bytes exceeds its cap of {max_size}")
        return self.raw(size)

    def count(self, *, item_size: int, max_count: int) -> int:
        """A u32 count of items of at least ``item_size`` bytes each, checked against what is left."""
        n = self.u32()
        if n > max_count or n * item_size > len(self._data) - self._pos:
            raise MalformedMessageError("item count exceeds the message")
        return n

    def ids(self, *, max_count: int) -> tuple[int, ...]:
        n = self.count(item_size=4, max_count=max_count)
        return tuple(self.u32() for _ in range(n))

    def words(self, *, length: int, itemsize: int) -> np.ndarray:
        got_size, count = self.u8(), self.u32()
        if got_size != itemsize or count != length:
            raise MalformedMessageError(f"vector of {count} x {got_size}-byte words, expected {length} x {itemsize}")
        dtype = _WORDS[itemsize]
        return np.frombuffer(self._take(count * itemsize), dtype=dtype).astype(dtype.newbyteorder("="), copy=False)

    def done(self) -> None:
        if self._pos != len(self._data):
            raise MalformedMessageError("trailing bytes after the message")
