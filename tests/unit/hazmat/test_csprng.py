import struct
from unittest import mock

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from hypothesis import given, settings, strategies as st

from secfl.exceptions import ConfigurationError
from secfl.hazmat import csprng, keystream


def test_uniform_range_and_moments():
    u = csprng.uniform(200_000)
    assert u.dtype == np.float64 and u.min() >= 0 and u.max() < 1
    # 6-sigma tolerances: a false failure has probability below 1e-8.
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / u.size)


def test_normal_moments():
    z = csprng.normal(400_001)
    assert z.size == 400_001
    assert abs(z.mean()) < 6 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 6 * np.sqrt(2 / z.size)
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 6 * np.sqrt(0.05 * 0.95 / z.size)


def test_draws_ignore_the_numpy_seed():
    np.random.seed(0)
    a = csprng.normal(16)
    np.random.seed(0)
    b = csprng.normal(16)
    assert not np.array_equal(a, b)
    assert csprng.random_bytes(32) != csprng.random_bytes(32)


# ---------------------------------------------------------------- the ChaCha20 counter (keystream limits)


def old_random_bytes(nbytes: int, urandom) -> bytes:
    """The construction before the fix: a random 16-byte pyca nonce, i.e. a random 32-bit counter start."""
    return Cipher(algorithms.ChaCha20(urandom(32), urandom(16)), mode=None).encryptor().update(bytes(nbytes))


def all_ones(n: int) -> bytes:  # the worst os.urandom output for the old construction
    return b"\xff" * n


def test_the_old_construction_fails_when_the_random_counter_lands_near_2_32():
    assert struct.unpack("<I", all_ones(16)[:4])[0] == 2**32 - 1
    assert len(old_random_bytes(64, all_ones)) == 64
    with pytest.raises(ValueError, match="ChaCha20"):
        old_random_bytes(65, all_ones)


@settings(max_examples=40, deadline=None)
@given(nbytes=st.integers(0, 4096))
def test_no_os_urandom_output_can_put_the_counter_near_its_end(nbytes):
    with mock.patch.object(csprng.os, "urandom", all_ones):
        out = csprng.random_bytes(nbytes)
    assert out == keystream.chacha20(all_ones(32), nbytes)  # block 0 of nonce 0 under the fresh key


@settings(max_examples=30, deadline=None)
@given(size=st.integers(0, 2000))
def test_sizes_are_exact(size):
    assert csprng.uniform(size).shape == (size,) and csprng.normal(size).shape == (size,)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, csprng.MAX_UNIFORMS + 1])
def test_bad_sizes_are_configuration_errors(bad):
    for draw in (csprng.uniform, csprng.normal):
        with pytest.raises(ConfigurationError):
            draw(bad)


@pytest.mark.parametrize("bad", [-8, 2.0, None, keystream.MAX_READ_BYTES + 1])
def test_bad_byte_counts_are_configuration_errors(bad):
    with pytest.raises(ConfigurationError):
        csprng.random_bytes(bad)
