"""Mask expansion: a 32-byte key -> AES-256-CTR keystream viewed as uint32/uint64 words, added in place.

Threat model: masks must be computationally indistinguishable from uniform to anyone without the
key, so the PRG is AES-256 in counter mode (pyca/cryptography, AES-NI when available). The nonce and
counter start at zero, which is safe ONLY because every key is single-use: the caller derives a
fresh key per session, round, group and pair with HKDF (see ``crypto.agree``/``crypto.hkdf_info``).
Reusing a key for two vectors reveals their difference. Words are read little-endian on every host.

Limits of one stream: the 16-byte initial counter block is all zero and OpenSSL (through pyca)
increments it as one 128-bit big-endian integer, carrying across the 64-bit halves (checked in
tests/unit/hazmat/test_prg.py), so a key's stream has 2^128 blocks of 16 bytes and no request a
machine can hold (2^63 uint64 words are 2^62 blocks) gets near a wrap; unlike ChaCha20 (see
``keystream``) there is no 32-bit counter to overflow. Every call restarts at block 0 (the same key
gives the same mask, by design), and one call's 1 MiB chunks continue one encryptor, so chunks never
reuse a counter block. The output must stay exactly this: the SecAgg known-answer vectors depend on it.
"""

from __future__ import annotations

import operator

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secfl.exceptions import ConfigurationError

__all__ = ["KEY_BYTES", "CHUNK_BYTES", "expand", "add_mask"]

KEY_BYTES = 32
CHUNK_BYTES = 1 << 20  # keystream produced and added 1 MiB at a time
_SLACK = 16  # update_into wants room for up to one extra block in some versions
_ZEROS = bytes(CHUNK_BYTES)
_WORDS = {np.dtype(np.uint32): np.dtype("<u4"), np.dtype(np.uint64): np.dtype("<u8")}


def _check_key(key: object) -> bytes:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ConfigurationError(f"key must be {KEY_BYTES} bytes, got {got}; derive it with crypto.agree/HKDF")
    return bytes(key)


def _word(dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt not in _WORDS:
        raise ConfigurationError(f"dtype must be np.uint32 or np.uint64, got {dtype!r}; pick one of those")
    return _WORDS[dt]


def _encryptor(key: bytes):
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()


def expand(key: bytes, *, length: int, dtype) -> np.ndarray:
    """The first ``length`` words of the AES-256-CTR keystream under ``key``.

    Args:
        key: 32-byte single-use key.
        length: number of words.
        dtype: ``np.uint32`` or ``np.uint64``.

    Returns:
        1-D array of ``length`` words of ``dtype`` (little-endian interpretation of the keystream).

    Raises:
        ConfigurationError: bad key length, dtype or length.
    """
    key = _check_key(key)
    word = _word(dtype)
    try:
        length = operator.index(length)
    except TypeError:
        raise ConfigurationError(f"length must be an int, got {type(length).__name__}; pass a word count") from None
    if length < 0:
        raise ConfigurationError(f"length must be >= 0, got {length}; pass a word count")
    total = length * word.itemsize
    buf = np.empty(total + _SLACK, dtype=np.uint8)
    encryptor, zeros = _encryptor(key), memoryview(_ZEROS)
    for start in range(0, total, CHUNK_BYTES):
        n = min(CHUNK_BYTES, total - start)
        encryptor.update_into(zeros[:n], buf[start:start + n + _SLACK])
    return buf[:total].view(word).astype(np.dtype(word.type), copy=False)


def add_mask(acc: np.ndarray, key: bytes, *, sign: int = +1) -> None:
    """In place: ``acc += sign * expand(key, ...)`` modulo 2^32 or 2^64 (the word size of ``acc``).

    Args:
        acc: contiguous, writeable 1-D uint32 or uint64 array.
        key: 32-byte single-use key.
        sign: +1 to add the mask, -1 to subtract it.

    Raises:
        ConfigurationError: bad key, sign, or ``acc`` not a contiguous writeable 1-D uint32/uint64 array.
    """
    key = _check_key(key)
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ConfigurationError(f"sign must be +1 or -1, got {sign!r}; pass +1 or -1")
    if not isinstance(acc, np.ndarray) or acc.ndim != 1 or np.dtype(acc.dtype.type) not in _WORDS:
        what = f"{acc.ndim}-D {acc.dtype}" if isinstance(acc, np.ndarray) else type(acc).__name__
        raise ConfigurationError(f"acc must be a 1-D uint32 or uint64 array, got {what}; use Quantize output")
    if not acc.flags.c_contiguous or not acc.flags.writeable:
        raise ConfigurationError("acc must be C-contiguous and writeable, got a view; pass np.ascontiguousarray(acc)")
    word = _WORDS[np.dtype(acc.dtype.type)]
    op = np.add if sign == 1 else np.subtract
    per_chunk = CHUNK_BYTES // word.itemsize
    buf = np.empty(CHUNK_BYTES + _SLACK, dtype=np.uint8)
    encryptor, zeros = _encryptor(key), memoryview(_ZEROS)
    for start in range(0, acc.size, per_chunk):
        part = acc[start:start + per_chunk]
        n = part.size * word.itemsize
        encryptor.update_into(zeros[:n], buf[:n + _SLACK])
        op(part, buf[:n].view(word), out=part)
