"""ChaCha20 keystream with an explicit 32-bit block counter that can never overflow.

Threat model: the keystream is the randomness itself (DP noise, samplers, test vectors), so a
(key, nonce, block) position must never be used twice, and a request must never fail half-way
through a long run. pyca/cryptography's ``ChaCha20(key, nonce16)`` reads ``nonce16`` as a 4-byte
little-endian initial block counter followed by the 12-byte RFC 8439 nonce. When that 32-bit
counter would pass 2^32 - 1, the installed 50.x raises ``ValueError`` while older versions carried
into the first nonce word (a 64-bit counter, OpenSSL style). A counter *started at a random value*
therefore fails at random, with probability about blocks / 2^32 per request: the bug removed here.
No cipher object made here is ever asked to cross 2^32, so the output is the same on all versions.

Limits of one stream (``ChaCha20Stream``):
- one (key, nonce) serves ``COUNTER_LIMIT`` = 2^32 blocks of 64 bytes (``STREAM_BYTES`` = 256 GiB);
- a read that crosses the end continues at block 0 of the next nonce (the 12-byte nonce read as a
  96-bit little-endian integer, plus one). The output is exactly ChaCha20 with a 128-bit
  little-endian counter (counter || nonce), the bytes the old carrying versions produced, and no
  (key, nonce, block) repeats inside a stream;
- past the last block of nonce 2^96 - 1 the stream is exhausted and refuses (never wraps to nonce
  0, which would repeat keystream);
- one read is at most ``MAX_READ_BYTES`` (= ``STREAM_BYTES``); larger, negative or non-int sizes
  raise ``ConfigurationError`` before any keystream is drawn.
Callers own key uniqueness: two streams with the same key and overlapping nonces repeat keystream.
"""

from __future__ import annotations

import operator

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from secfl.exceptions import ConfigurationError

__all__ = ["KEY_BYTES", "NONCE_BYTES", "BLOCK_BYTES", "COUNTER_LIMIT", "STREAM_BYTES", "MAX_READ_BYTES",
           "ChaCha20Stream", "chacha20"]

KEY_BYTES = 32
NONCE_BYTES = 12
BLOCK_BYTES = 64
COUNTER_LIMIT = 1 << 32  # blocks per (key, nonce)
STREAM_BYTES = BLOCK_BYTES * COUNTER_LIMIT  # 256 GiB
MAX_READ_BYTES = STREAM_BYTES
_NONCE_LIMIT = 1 << (8 * NONCE_BYTES)


def _count(n: object, name: str, limit: int) -> int:
    if isinstance(n, bool):
        raise ConfigurationError(f"{name} must be an int, got bool; pass a non-negative int")
    try:
        value = operator.index(n)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(f"{name} must be an int, got {type(n).__name__}; pass a non-negative int") from None
    if not 0 <= value < limit:
        raise ConfigurationError(f"{name} must be in [0, {limit}), got {value}; split the request or lower it")
    return value


class ChaCha20Stream:
    """One ChaCha20 keystream read front to back, split across nonces at the 2^32-block counter limit."""

    def __init__(self, key: bytes, nonce: bytes = bytes(NONCE_BYTES), *, start_block: int = 0) -> None:
        """Position the stream at block ``start_block`` of ``nonce`` under ``key``.

        Args:
            key: 32 bytes.
            nonce: 12 bytes (default all zero: fine for a single-use key).
            start_block: first block counter, 0 <= start_block < 2^32 (tests force it near 2^32).

        Raises:
            ConfigurationError: a bad key, nonce or start block.
        """
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
            raise ConfigurationError(f"key must be {KEY_BYTES} bytes; pass a fresh key from os.urandom({KEY_BYTES})")
        if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
            raise ConfigurationError(f"nonce must be {NONCE_BYTES} bytes (the counter is separate: start_block)")
        self._key = bytes(key)
        self._nonce = int.from_bytes(nonce, "little")
        self._offset = _count(start_block, "start_block", COUNTER_LIMIT) * BLOCK_BYTES  # bytes into this nonce
        self._encryptor = self._open(start_block)
        self.drawn = 0  # bytes read so far

    def _open(self, block: int):
        counter_and_nonce = block.to_bytes(4, "little") + self._nonce.to_bytes(NONCE_BYTES, "little")
        return Cipher(algorithms.ChaCha20(self._key, counter_and_nonce), mode=None).encryptor()

    @property
    def position(self) -> tuple[int, int]:
        """(nonce as a little-endian integer, byte offset into its 256 GiB stream) of the next byte."""
        return self._nonce, self._offset

    def read(self, n: int) -> bytes:
        """The next ``n`` keystream bytes.

        Raises:
            ConfigurationError: ``n`` is not an int in [0, MAX_READ_BYTES], or the read would run past
                the last block of the last nonce (2^96 - 1); nothing is drawn then.
        """
        n = _count(n, "n", MAX_READ_BYTES + 1)
        room = STREAM_BYTES - self._offset
        if n > room and self._nonce + 1 >= _NONCE_LIMIT:
            raise ConfigurationError(
                f"stream exhausted: nonce 2^96 - 1 has {room} bytes left, {n} asked; use a new key")
        if n <= room:
            out = self._encryptor.update(bytes(n))
            self._offset += n
        else:  # n <= STREAM_BYTES, so one crossing is enough
            head = self._encryptor.update(bytes(room))
            self._nonce, self._offset = self._nonce + 1, n - room
            self._encryptor = self._open(0)
            out = head + self._encryptor.update(bytes(n - room))
        self.drawn += n
        return out


def chacha20(key: bytes, nbytes: int, *, nonce: bytes = bytes(NONCE_BYTES), start_block: int = 0) -> bytes:
    """``nbytes`` of keystream from block ``start_block`` of ``nonce`` (see ``ChaCha20Stream`` for limits)."""
    return ChaCha20Stream(key, nonce, start_block=start_block).read(nbytes)
