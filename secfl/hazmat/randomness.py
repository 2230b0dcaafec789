"""Sources of random bytes for key generation, nonces and Shamir coefficients, plus uniform sampling mod m.

Threat model: every secret (keys, nonces, polynomial coefficients) must be unpredictable to the
server and to other clients, so the default source everywhere is ``os.urandom`` (``OS_RANDOM``).
``InsecureDeterministicRandomness`` exists only to produce reproducible known-answer test vectors:
anyone who knows its seed knows every "secret" it produced. Never pass it outside tests.

Limits of the test stream: it is one ``keystream.ChaCha20Stream`` (counter and nonce from zero).
Its first 256 GiB are the plain ChaCha20 keystream of nonce 0, unchanged from earlier versions, so
the known-answer vectors stay valid; from there it continues on nonce 1, 2, ... (the 128-bit
counter continuation) instead of overflowing the 32-bit counter. One ``bytes(n)`` call is at most
256 GiB; a larger, negative or non-int ``n`` raises ``ConfigurationError``.
"""

from __future__ import annotations

import hashlib
import operator
import os
from typing import Protocol, runtime_checkable

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat.keystream import ChaCha20Stream

__all__ = ["Randomness", "OsRandomness", "OS_RANDOM", "InsecureDeterministicRandomness", "uniform_mod"]

_MAX_MODULUS = 1 << 62
_TEST_DOMAIN = b"secfl insecure test randomness"


def check_count(n: object, name: str) -> int:
    """``n`` as a non-negative int, or ConfigurationError naming ``name``."""
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(f"{name} must be an int, got {type(n).__name__}; pass a non-negative int") from None
    if value < 0:
        raise ConfigurationError(f"{name} must be >= 0, got {value}; pass a non-negative int")
    return value


@runtime_checkable
class Randomness(Protocol):
    """Anything that hands out random bytes on request."""

    def bytes(self, n: int) -> bytes:
        """Return the next ``n`` random bytes."""
        ...


class OsRandomness:
    """Random bytes from the operating system CSPRNG (``os.urandom``); the default everywhere."""

    def bytes(self, n: int) -> bytes:
        """Return ``n`` fresh bytes from ``os.urandom``.

        Raises:
            ConfigurationError: ``n`` is not a non-negative int.
        """
        return os.urandom(check_count(n, "n"))

    def __repr__(self) -> str:
        return "OsRandomness()"


OS_RANDOM = OsRandomness()


class InsecureDeterministicRandomness:
    """INSECURE reproducible byte stream, ONLY for known-answer test vectors; never for real use.

    The stream is the ChaCha20 keystream under key SHA-256(b"secfl insecure test randomness" + seed)
    with an all-zero nonce and counter. Successive ``bytes(n)`` calls return successive parts of it;
    after 2^32 blocks it moves on to nonce 1 with the counter back at 0 (see the module doc).
    """

    def __init__(self, seed: bytes) -> None:
        """Start the stream for ``seed``.

        Args:
            seed: any bytes; the same seed always gives the same stream.

        Raises:
            ConfigurationError: ``seed`` is not bytes.
        """
        if not isinstance(seed, (bytes, bytearray)):
            raise ConfigurationError(f"seed must be bytes, got {type(seed).__name__}; pass e.g. b'test-vector-1'")
        key = hashlib.sha256(_TEST_DOMAIN + bytes(seed)).digest()
        self._stream = ChaCha20Stream(key)

    def bytes(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the test stream.

        Raises:
            ConfigurationError: ``n`` is not an int in [0, 256 GiB].
        """
        return self._stream.read(check_count(n, "n"))

    def __repr__(self) -> str:
        return "InsecureDeterministicRandomness(<test seed>)"


def uniform_mod(randomness: Randomness, modulus: int, size: int) -> np.ndarray:
    """``size`` integers uniform on [0, modulus), by rejection sampling of masked random words.

    Args:
        randomness: source of bytes (``OS_RANDOM`` for anything secret).
        modulus: 1 <= modulus < 2^62.
        size: number of draws.

    Returns:
        uint64 array of shape (size,).

    Raises:
        ConfigurationError: ``modulus`` or ``size`` out of range.
    """
    size = check_count(size, "size")
    modulus = check_count(modulus, "modulus")
    if not 1 <= modulus < _MAX_MODULUS:
        raise ConfigurationError(f"modulus must be in [1, 2^62), got {modulus}; use a smaller modulus")
    bits = (modulus - 1).bit_length()
    word = np.dtype("<u4") if bits <= 32 else np.dtype("<u8")
    bit_mask = np.uint64((1 << bits) - 1)
    accept = modulus / (1 << bits)  # > 1/2
    out = np.empty(size, dtype=np.uint64)
    filled = 0
    while filled < size:
        need = size - filled
        draw = int(need / accept * 1.05) + 16
        words = np.frombuffer(randomness.bytes(draw * word.itemsize), dtype=word).astype(np.uint64) & bit_mask
        good = words[words < np.uint64(modulus)][:need]
        out[filled:filled + good.size] = good
        filled += good.size
    return out
