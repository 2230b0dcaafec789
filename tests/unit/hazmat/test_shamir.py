import itertools
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError
from secfl.hazmat import shamir
from secfl.hazmat.randomness import InsecureDeterministicRandomness

P = shamir.PRIME


def random_secrets(m: int) -> np.ndarray:
    return np.stack([shamir.encode_secret(os.urandom(32)) for _ in range(m)])


@pytest.mark.parametrize("n, t", [(1, 1), (3, 1), (3, 2), (5, 3), (10, 6), (20, 20)])
def test_round_trip(n, t):
    secrets = random_secrets(4)
    xs = list(range(1, n + 1))
    shares = shamir.split(secrets, xs=xs, threshold=t)
    assert shares.shape == (n, 4, 9) and shares.dtype == np.uint64 and int(shares.max()) < P
    assert np.array_equal(shamir.combine(xs, shares, threshold=t), secrets)
    assert np.array_equal(shamir.combine(xs[:t], shares[:t], threshold=t), secrets)


def test_every_t_subset_reconstructs():
    n, t = 6, 3
    secrets = random_secrets(2)
    xs = [5, 17, 2**31 - 2, 1, 999, 42]
    shares = shamir.split(secrets, xs=xs, threshold=t)
    for subset in itertools.combinations(range(n), t):
        idx = list(subset)
        assert np.array_equal(shamir.combine([xs[i] for i in idx], shares[idx], threshold=t), secrets)
    # order does not matter either
    assert np.array_equal(shamir.combine(xs[::-1], shares[::-1], threshold=t), secrets)


def test_secret_bytes_round_trip():
    raw = [os.urandom(32) for _ in range(5)] + [bytes(32), b"\xff" * 32]
    secrets = np.stack([shamir.encode_secret(r) for r in raw])
    assert secrets.shape == (7, 9) and int(secrets.max()) < 2**30
    xs = [1, 2, 3, 4]
    back = shamir.combine(xs, shamir.split(secrets, xs=xs, threshold=3), threshold=3)
    assert [shamir.decode_secret(row) for row in back] == raw
    assert int(shamir.encode_secret(b"\xff" * 32)[-1]) == 2**16 - 1


def test_decode_refuses_non_secrets():
    good = shamir.encode_secret(os.urandom(32))
    too_big = good.copy()
    too_big[3] = 2**30
    stray = good.copy()
    stray[-1] |= np.uint64(1 << 16)  # bit 256
    for bad in (too_big, stray):
        with pytest.raises(ProtocolIntegrityError) as info:
            shamir.decode_secret(bad)
        assert str(info.value) == "protocol integrity check failed"
    with pytest.raises(ConfigurationError):
        shamir.decode_secret(good[:8])
    for raw in (bytes(31), bytes(33), "x" * 32):
        with pytest.raises(ConfigurationError):
            shamir.encode_secret(raw)


def test_tampered_extra_share_is_detected():
    secrets = random_secrets(3)
    xs = list(range(1, 8))
    shares = shamir.split(secrets, xs=xs, threshold=4)
    for row in range(7):  # wherever the bad share sits, some check sees it
        bad = shares.copy()
        bad[row, 1, 4] = (bad[row, 1, 4] + np.uint64(1)) % np.uint64(P)
        with pytest.raises(ProtocolIntegrityError) as info:
            shamir.combine(xs, bad, threshold=4)
        assert str(info.value) == "protocol integrity check failed"


def test_share_outside_the_field_is_an_integrity_failure():
    xs = [1, 2, 3]
    shares = shamir.split(random_secrets(1), xs=xs, threshold=2)
    shares[0, 0, 0] = np.uint64(P)
    with pytest.raises(ProtocolIntegrityError):
        shamir.combine(xs, shares, threshold=2)


def test_fewer_than_t_shares_are_consistent_with_any_secret():
    # t-1 shares plus any candidate secret lie on some polynomial of degree t-1: they pin nothing down.
    t = 4
    xs = [3, 8, 11, 20]
    secrets = random_secrets(1)
    shares = shamir.split(secrets, xs=xs, threshold=t)
    known_x, known_y = xs[: t - 1], [int(v) for v in shares[: t - 1, 0, 0]]
    for candidate in (0, 1, 123456, P - 1):
        pts = [(0, candidate), *zip(known_x, known_y)]

        def interpolate(z, pts=pts):
            total = 0
            for i, (xi, yi) in enumerate(pts):
                num = den = 1
                for j, (xj, _) in enumerate(pts):
                    if j != i:
                        num, den = num * (z - xj) % P, den * (xi - xj) % P
                total += yi * num * pow(den, -1, P)
            return total % P

        fake = shares[:, :1, :1].copy()
        fake[t - 1, 0, 0] = interpolate(xs[t - 1])
        assert int(shamir.combine(xs, fake, threshold=t)[0, 0]) == candidate
    with pytest.raises(ConfigurationError):
        shamir.combine(xs[: t - 1], shares[: t - 1], threshold=t)


def test_deterministic_randomness_gives_reproducible_shares():
    secrets = random_secrets(2)
    a = shamir.split(secrets, xs=[1, 2, 3], threshold=2, randomness=InsecureDeterministicRandomness(b"s"))
    b = shamir.split(secrets, xs=[1, 2, 3], threshold=2, randomness=InsecureDeterministicRandomness(b"s"))
    c = shamir.split(secrets, xs=[1, 2, 3], threshold=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("xs, t", [([1, 1, 2], 2), ([0, 1, 2], 2), ([1, 2, P], 2), ([1, 2, 3], 0), ([1, 2, 3], 4),
                                   ([1.0, 2, 3], 2)])
def test_bad_split_parameters(xs, t):
    with pytest.raises(ConfigurationError):
        shamir.split(random_secrets(1), xs=xs, threshold=t)


def test_bad_secrets_array():
    for bad in (np.zeros((2, 9), np.int64), np.zeros(9, np.uint64), np.full((1, 9), P, np.uint64)):
        with pytest.raises(ConfigurationError):
            shamir.split(bad, xs=[1, 2], threshold=2)


def test_bad_combine_parameters():
    xs = [1, 2, 3]
    shares = shamir.split(random_secrets(2), xs=xs, threshold=2)
    with pytest.raises(ConfigurationError):
        shamir.combine([1, 1, 3], shares, threshold=2)
    with pytest.raises(ConfigurationError):
        shamir.combine([0, 2, 3], shares, threshold=2)
    with pytest.raises(ConfigurationError):
        shamir.combine([1, 2], shares, threshold=2)  # shape mismatch
    with pytest.raises(ConfigurationError):
        shamir.combine(xs, shares[:, 0], threshold=2)
    with pytest.raises(ConfigurationError):
        shamir.combine(xs, shares.astype(np.int64), threshold=2)
    with pytest.raises(ConfigurationError):
        shamir.combine(xs[:1], shares[:1], threshold=2)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_property_combine_inverts_split(data):
    n = data.draw(st.integers(1, 20), label="n")
    t = data.draw(st.integers(1, n), label="t")
    m = data.draw(st.integers(1, 3), label="m")
    xs = data.draw(st.lists(st.integers(1, P - 1), min_size=n, max_size=n, unique=True), label="xs")
    values = data.draw(st.lists(st.integers(0, P - 1), min_size=m * 2, max_size=m * 2), label="secrets")
    secrets = np.array(values, dtype=np.uint64).reshape(m, 2)
    shares = shamir.split(secrets, xs=xs, threshold=t)
    size = data.draw(st.integers(t, n), label="subset size")
    idx = data.draw(st.permutations(range(n)), label="order")[:size]
    assert np.array_equal(shamir.combine([xs[i] for i in idx], shares[idx], threshold=t), secrets)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 12), st.integers(0, 6), st.integers(0, 3), st.data())
def test_combine_robust_finds_every_wrong_share_it_can_and_never_returns_a_wrong_secret(t, extra, wrong, data):
    """Within the decoding radius (s >= t + 2e) the secret is rebuilt and exactly the wrong shares are named;
    beyond it a checked subset search may still find the secret (wrong shares can cancel), else an
    integrity error: never a wrong secret."""
    secret = os.urandom(32)
    s = t + extra
    xs = list(range(1, s + 1))
    shares = np.array(shamir.split(shamir.encode_secret(secret)[None], xs=xs, threshold=t)).reshape(s, 1, 9)
    bad = data.draw(st.lists(st.sampled_from(range(s)), min_size=min(wrong, s), max_size=min(wrong, s), unique=True))
    for i in bad:
        shares[i, 0, data.draw(st.integers(0, 8))] ^= 1  # stays below the field prime: a plausible lie
    right = lambda e: shamir.decode_secret(e[0]) == secret  # noqa: E731
    try:
        out, liars = shamir.combine_robust(xs, shares, threshold=t, check=right)
    except ProtocolIntegrityError:
        assert s - len(bad) < t + len(bad), "decodable, but refused"  # within the radius it must succeed
        return
    assert shamir.decode_secret(out[0]) == secret  # whatever path found it, never a wrong secret
    if s >= t + 2 * len(bad):  # within the decoding radius every wrong share is named, and only those
        assert sorted(liars) == sorted(xs[i] for i in bad)
