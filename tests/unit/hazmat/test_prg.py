import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from secfl.exceptions import ConfigurationError
from secfl.hazmat import prg

DTYPES = [np.uint32, np.uint64]


def aes_ctr_keystream(key: bytes, nbytes: int) -> bytes:
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(nbytes))


def test_known_answer_zero_key():
    expected = np.frombuffer(aes_ctr_keystream(bytes(32), 16), dtype="<u4").astype(np.uint32)
    got = prg.expand(bytes(32), length=4, dtype=np.uint32)
    assert got.dtype == np.uint32 and np.array_equal(got, expected)
    # AES-256 of the all-zero block under the all-zero key (FIPS-197 style vector): dc95c078...
    assert got[0] == int.from_bytes(bytes.fromhex("dc95c078"), "little")


@pytest.mark.parametrize("dtype", DTYPES)
def test_deterministic_and_key_dependent(dtype):
    key = os.urandom(32)
    a = prg.expand(key, length=1000, dtype=dtype)
    assert a.dtype == dtype and a.shape == (1000,)
    assert np.array_equal(a, prg.expand(key, length=1000, dtype=dtype))
    assert not np.array_equal(a, prg.expand(os.urandom(32), length=1000, dtype=dtype))
    assert prg.expand(key, length=0, dtype=dtype).shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_boundaries(dtype):
    key = os.urandom(32)
    itemsize = np.dtype(dtype).itemsize
    length = 2 * prg.CHUNK_BYTES // itemsize + 3  # two full chunks and a ragged tail
    expected = np.frombuffer(aes_ctr_keystream(key, length * itemsize), dtype=np.dtype(dtype).newbyteorder("<"))
    got = prg.expand(key, length=length, dtype=dtype)
    assert np.array_equal(got, expected)
    # a prefix of a longer expansion is the shorter expansion
    assert np.array_equal(prg.expand(key, length=5, dtype=dtype), got[:5])
    acc = np.zeros(length, dtype=dtype)
    prg.add_mask(acc, key)
    assert np.array_equal(acc, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_then_subtract_restores(dtype):
    rng = np.random.default_rng(0)
    original = rng.integers(0, np.iinfo(dtype).max, size=prg.CHUNK_BYTES // 4 + 7, dtype=dtype, endpoint=True)
    acc = original.copy()
    k1, k2 = os.urandom(32), os.urandom(32)
    prg.add_mask(acc, k1, sign=+1)
    prg.add_mask(acc, k2, sign=-1)
    assert not np.array_equal(acc, original)
    prg.add_mask(acc, k2, sign=+1)
    prg.add_mask(acc, k1, sign=-1)
    assert np.array_equal(acc, original)


@pytest.mark.parametrize("dtype, bits", [(np.uint32, 32), (np.uint64, 64)])
def test_wraps_modulo_word_size(dtype, bits):
    key = os.urandom(32)
    start = np.array([0, 1, 2**bits - 1, 2**bits - 2, 12345, 2**(bits - 1)], dtype=dtype)
    mask = prg.expand(key, length=start.size, dtype=dtype)
    plus, minus = start.copy(), start.copy()
    prg.add_mask(plus, key, sign=+1)
    prg.add_mask(minus, key, sign=-1)
    for s, m, p, q in zip(start, mask, plus, minus):
        assert int(p) == (int(s) + int(m)) % 2**bits
        assert int(q) == (int(s) - int(m)) % 2**bits


def test_pairwise_masks_cancel_in_the_sum():
    key = os.urandom(32)
    u, v = np.arange(100, dtype=np.uint32), np.arange(100, 200, dtype=np.uint32)
    mu, mv = u.copy(), v.copy()
    prg.add_mask(mu, key, sign=+1)
    prg.add_mask(mv, key, sign=-1)
    assert np.array_equal(mu + mv, u + v)


@pytest.mark.parametrize("key", [bytes(31), bytes(33), "k" * 32, None])
def test_bad_key(key):
    with pytest.raises(ConfigurationError):
        prg.expand(key, length=4, dtype=np.uint32)
    with pytest.raises(ConfigurationError):
        prg.add_mask(np.zeros(4, np.uint32), key)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.float64, "u1", "nonsense"])
def test_bad_dtype(dtype):
    with pytest.raises(ConfigurationError):
        prg.expand(bytes(32), length=4, dtype=dtype)


@pytest.mark.parametrize("acc", [
    np.zeros(8, np.int64),
    np.zeros(8, np.float32),
    np.zeros((2, 4), np.uint32),
    np.zeros(8, np.uint32)[::2],
    [0, 0, 0],
])
def test_bad_accumulator(acc):
    with pytest.raises(ConfigurationError):
        prg.add_mask(acc, bytes(32))


def test_read_only_accumulator_and_bad_sign_refused():
    acc = np.zeros(8, np.uint32)
    acc.flags.writeable = False
    with pytest.raises(ConfigurationError):
        prg.add_mask(acc, bytes(32))
    for sign in (0, 2, -2, True):
        with pytest.raises(ConfigurationError):
            prg.add_mask(np.zeros(8, np.uint32), bytes(32), sign=sign)


def test_bad_length():
    for length in (-1, 2.0):
        with pytest.raises(ConfigurationError):
            prg.expand(bytes(32), length=length, dtype=np.uint32)


def test_openssl_ctr_counter_is_128_bit_so_the_zero_start_cannot_wrap():
    # The documented limit of prg: OpenSSL increments the whole 16-byte counter block (big-endian),
    # carrying from the low 64 bits into the high ones, and wraps only after 2^128 blocks.
    key = os.urandom(32)

    def block(counter: int, nblocks: int = 1) -> bytes:
        iv = counter.to_bytes(16, "big")
        return Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(bytes(16 * nblocks))

    assert block(2**64 - 1, 2)[16:] == block(2**64)  # carry into the high half
    assert block(2**32 - 1, 2)[16:] == block(2**32)  # no 32-bit counter like ChaCha20's
    assert block(2**128 - 1, 2)[16:] == block(0)  # the only wrap: 2^128 blocks from a zero start
    assert prg.expand(key, length=8, dtype=np.uint32).tobytes() == block(0, 2)
