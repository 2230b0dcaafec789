import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
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
