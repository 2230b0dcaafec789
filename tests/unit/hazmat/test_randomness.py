import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from secfl.exceptions import ConfigurationError
from secfl.hazmat.keystream import COUNTER_LIMIT, MAX_READ_BYTES, ChaCha20Stream, chacha20
from secfl.hazmat.randomness import OS_RANDOM, InsecureDeterministicRandomness, OsRandomness, Randomness, uniform_mod


def test_os_randomness_gives_fresh_bytes():
    assert isinstance(OS_RANDOM, OsRandomness) and isinstance(OS_RANDOM, Randomness)
    a, b = OS_RANDOM.bytes(32), OS_RANDOM.bytes(32)
    assert len(a) == 32 and a != b
    assert OS_RANDOM.bytes(0) == b""


def test_deterministic_stream_is_reproducible_and_stateful():
    a, b = InsecureDeterministicRandomness(b"seed"), InsecureDeterministicRandomness(b"seed")
    first = a.bytes(10)
    assert first == b.bytes(10)
    assert a.bytes(10) != first  # the stream moves on
    whole = InsecureDeterministicRandomness(b"seed").bytes(20)
    assert whole == first + b.bytes(10)
    assert InsecureDeterministicRandomness(b"other").bytes(10) != first


def test_deterministic_stream_matches_its_definition():
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    key = hashlib.sha256(b"secfl insecure test randomness" + b"kat").digest()
    expected = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(64))
    assert InsecureDeterministicRandomness(b"kat").bytes(64) == expected


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_bad_byte_counts_refused(bad):
    with pytest.raises(ConfigurationError):
        OS_RANDOM.bytes(bad)
    with pytest.raises(ConfigurationError):
        InsecureDeterministicRandomness(b"s").bytes(bad)


def test_seed_must_be_bytes():
    with pytest.raises(ConfigurationError):
        InsecureDeterministicRandomness("seed")  # type: ignore[arg-type]


@pytest.mark.parametrize("modulus", [1, 2, 3, 7, 2**31 - 1, 2**32 + 15, 2**61 + 1, 2**62 - 1])
def test_uniform_mod_range(modulus):
    x = uniform_mod(OS_RANDOM, modulus, 5000)
    assert x.dtype == np.uint64 and x.shape == (5000,)
    assert int(x.max()) < modulus
    if modulus == 1:
        assert not x.any()


def test_uniform_mod_is_roughly_uniform():
    # modulus 3 in 2 bits: a biased "mask and reduce" would give 0 half the time.
    x = uniform_mod(OS_RANDOM, 3, 60_000)
    counts = np.bincount(x.astype(np.int64), minlength=3)
    expected = x.size / 3
    assert np.all(np.abs(counts - expected) < 6 * np.sqrt(expected))


def test_uniform_mod_deterministic_under_test_randomness():
    a = uniform_mod(InsecureDeterministicRandomness(b"u"), 1000, 100)
    b = uniform_mod(InsecureDeterministicRandomness(b"u"), 1000, 100)
    assert np.array_equal(a, b)
    assert uniform_mod(OS_RANDOM, 1000, 0).shape == (0,)


@pytest.mark.parametrize("modulus, size", [(0, 10), (2**62, 10), (-5, 10), (10, -1)])
def test_uniform_mod_bad_parameters(modulus, size):
    with pytest.raises(ConfigurationError):
        uniform_mod(OS_RANDOM, modulus, size)


# ---------------------------------------------------------------- the test stream past 2^32 blocks


def stream_near_its_end(seed: bytes, blocks_left: int) -> InsecureDeterministicRandomness:
    """A test stream positioned ``blocks_left`` blocks before the end of nonce 0 (256 GiB in)."""
    import hashlib

    r = InsecureDeterministicRandomness(seed)
    key = hashlib.sha256(b"secfl insecure test randomness" + seed).digest()
    r._stream = ChaCha20Stream(key, start_block=COUNTER_LIMIT - blocks_left)
    return r


@settings(max_examples=40, deadline=None)
@given(blocks_left=st.integers(1, 4), reads=st.lists(st.integers(0, 200), max_size=6))
def test_stream_continues_on_the_next_nonce_instead_of_overflowing(blocks_left, reads):
    import hashlib

    r = stream_near_its_end(b"kat", blocks_left)
    got = b"".join(r.bytes(n) for n in reads)
    key = hashlib.sha256(b"secfl insecure test randomness" + b"kat").digest()
    whole = chacha20(key, sum(reads), start_block=COUNTER_LIMIT - blocks_left)
    assert got == whole
    tail = max(0, sum(reads) - 64 * blocks_left)
    assert whole[len(whole) - tail:] == chacha20(key, tail, nonce=(1).to_bytes(12, "little"))


def test_uniform_mod_across_the_boundary():
    x = uniform_mod(stream_near_its_end(b"u", 1), 1000, 500)  # several calls, the first crosses the switch
    assert x.shape == (500,) and int(x.max()) < 1000


def test_too_large_a_request_is_refused():
    with pytest.raises(ConfigurationError):
        InsecureDeterministicRandomness(b"s").bytes(MAX_READ_BYTES + 1)


@settings(max_examples=40, deadline=None)
@given(seed=st.binary(max_size=8), reads=st.lists(st.integers(0, 300), max_size=8))
def test_first_stream_is_byte_for_byte_the_old_single_encryptor(seed, reads):
    import hashlib

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    key = hashlib.sha256(b"secfl insecure test randomness" + seed).digest()
    old = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()  # the construction the KATs used
    new = InsecureDeterministicRandomness(seed)
    assert [new.bytes(n) for n in reads] == [old.update(bytes(n)) for n in reads]
