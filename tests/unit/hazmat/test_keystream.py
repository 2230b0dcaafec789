"""The ChaCha20 keystream helper: counter positions forced at the 2^32-block boundary."""

import os
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings, strategies as st

from secfl.exceptions import ConfigurationError
from secfl.hazmat import keystream
from secfl.hazmat.keystream import BLOCK_BYTES, COUNTER_LIMIT, STREAM_BYTES, ChaCha20Stream, chacha20

KEY = bytes(range(32))
NONCE = bytes.fromhex("000000090000004a00000000")  # RFC 8439 section 2.4.2
LAST_NONCE = b"\xff" * 12
near_end = st.integers(COUNTER_LIMIT - 8, COUNTER_LIMIT - 1)
sizes = st.integers(0, 9 * BLOCK_BYTES)


def raw(key: bytes, nonce: bytes, block: int, nbytes: int) -> bytes:
    """pyca's ChaCha20 with the 16-byte value counter (4 bytes, little-endian) || nonce."""
    cipher = Cipher(algorithms.ChaCha20(key, struct.pack("<I", block) + nonce), mode=None)
    return cipher.encryptor().update(bytes(nbytes))


def reference(key: bytes, nonce: bytes, block: int, nbytes: int) -> bytes:
    """Block by block with a 128-bit little-endian counter (block || nonce): never crosses 2^32 in pyca."""
    position = block + (int.from_bytes(nonce, "little") << 32)
    out = b""
    while len(out) < nbytes:
        b, n = position & 0xFFFFFFFF, position >> 32
        out += raw(key, n.to_bytes(12, "little"), b, BLOCK_BYTES)
        position += 1
    return out[:nbytes]


def test_rfc8439_vector_and_counter_layout():
    # RFC 8439 2.4.2: the keystream of block 1 starts 22 4f 51 f3 (the sunscreen ciphertext begins 6e 2e 35 9a).
    assert chacha20(KEY, 4, nonce=bytes.fromhex("000000000000004a00000000"), start_block=1) == bytes.fromhex("224f51f3")
    assert chacha20(KEY, 128, nonce=NONCE)[64:] == chacha20(KEY, 64, nonce=NONCE, start_block=1)
    assert chacha20(KEY, 64) == raw(KEY, bytes(12), 0, 64)


def test_the_old_random_counter_start_does_overflow_at_the_boundary():
    # The bug: os.urandom(16) as pyca's nonce puts a random counter in the first 4 bytes.
    old = Cipher(algorithms.ChaCha20(KEY, struct.pack("<I", COUNTER_LIMIT - 1) + NONCE), mode=None).encryptor()
    with pytest.raises(ValueError, match="ChaCha20"):
        old.update(bytes(2 * BLOCK_BYTES))
    assert len(chacha20(KEY, 2 * BLOCK_BYTES, nonce=NONCE, start_block=COUNTER_LIMIT - 1)) == 2 * BLOCK_BYTES


@settings(max_examples=60, deadline=None)
@given(start=near_end, n=sizes)
def test_any_request_near_the_boundary_is_served_as_the_128_bit_counter_stream(start, n):
    assert chacha20(KEY, n, nonce=NONCE, start_block=start) == reference(KEY, NONCE, start, n)


@settings(max_examples=60, deadline=None)
@given(start=near_end, reads=st.lists(st.integers(0, 3 * BLOCK_BYTES), max_size=6))
def test_successive_reads_continue_one_stream_across_the_nonce_switch(start, reads):
    stream = ChaCha20Stream(KEY, NONCE, start_block=start)
    joined = b"".join(stream.read(n) for n in reads)
    assert joined == reference(KEY, NONCE, start, sum(reads)) and stream.drawn == sum(reads)
    nonce, offset = stream.position
    crossed = start * BLOCK_BYTES + sum(reads) > STREAM_BYTES
    assert nonce == int.from_bytes(NONCE, "little") + crossed
    assert offset == start * BLOCK_BYTES + sum(reads) - crossed * STREAM_BYTES


def test_no_position_repeats_across_the_switch():
    blocks = chacha20(KEY, 4 * BLOCK_BYTES, start_block=COUNTER_LIMIT - 2)
    chunks = {blocks[i:i + BLOCK_BYTES] for i in range(0, len(blocks), BLOCK_BYTES)}
    assert len(chunks) == 4
    assert blocks[2 * BLOCK_BYTES:] == chacha20(KEY, 2 * BLOCK_BYTES, nonce=(1).to_bytes(12, "little"))


def test_the_last_nonce_is_refused_not_wrapped():
    stream = ChaCha20Stream(KEY, LAST_NONCE, start_block=COUNTER_LIMIT - 1)
    assert len(stream.read(BLOCK_BYTES)) == BLOCK_BYTES  # the very last block is fine
    with pytest.raises(ConfigurationError, match="exhausted"):
        stream.read(1)
    assert stream.drawn == BLOCK_BYTES


def test_a_fresh_stream_serves_a_whole_stream_of_bytes_without_splitting():
    # No request the API accepts can overflow from block 0: MAX_READ_BYTES is one full stream.
    assert keystream.MAX_READ_BYTES == STREAM_BYTES == 64 * 2**32
    stream = ChaCha20Stream(KEY, start_block=COUNTER_LIMIT - 1)
    stream.read(BLOCK_BYTES)
    assert stream.position == (0, STREAM_BYTES)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True, keystream.MAX_READ_BYTES + 1])
def test_bad_sizes_are_configuration_errors(bad):
    with pytest.raises(ConfigurationError):
        chacha20(KEY, bad)


@pytest.mark.parametrize("kwargs", [{"start_block": -1}, {"start_block": COUNTER_LIMIT}, {"start_block": 2.0},
                                    {"nonce": bytes(16)}, {"nonce": "x" * 12}])
def test_bad_positions_are_configuration_errors(kwargs):
    with pytest.raises(ConfigurationError):
        chacha20(KEY, 1, **kwargs)


@pytest.mark.parametrize("key", [bytes(31), "k" * 32, None])
def test_bad_keys_are_configuration_errors(key):
    with pytest.raises(ConfigurationError):
        chacha20(key, 1)


def test_different_keys_differ():
    assert chacha20(os.urandom(32), 64) != chacha20(os.urandom(32), 64)
