import os

import pytest

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError
from secfl.hazmat import crypto
from secfl.hazmat.randomness import InsecureDeterministicRandomness

OPAQUE = "protocol integrity check failed"

# Low-order points of Curve25519 (RFC 7748 section 6.1 / "cr.yp.to/ecdh.html#validate"), little-endian u.
LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def refused(fn, *args, **kwargs):
    with pytest.raises(ProtocolIntegrityError) as info:
        fn(*args, **kwargs)
    assert str(info.value) == OPAQUE


def test_agree_is_symmetric_and_bound_to_info():
    u_sk, u_pk = crypto.x25519_keypair()
    v_sk, v_pk = crypto.x25519_keypair()
    info = crypto.hkdf_info("secagg-mask", b"session", 3, 0, 1, 2)
    k_uv = crypto.agree(u_sk, v_pk, info=info)
    assert len(k_uv) == 32 and k_uv == crypto.agree(v_sk, u_pk, info=info)
    assert k_uv != crypto.agree(u_sk, v_pk, info=crypto.hkdf_info("secagg-mask", b"session", 4, 0, 1, 2))
    w_sk, w_pk = crypto.x25519_keypair()
    assert k_uv != crypto.agree(u_sk, w_pk, info=info)
    assert crypto.x25519_public(u_sk) == u_pk


@pytest.mark.parametrize("point", LOW_ORDER)
def test_low_order_public_keys_refused(point):
    sk, _ = crypto.x25519_keypair()
    refused(crypto.agree, sk, point, info=b"i")


def test_bad_key_lengths_in_agree_refused():
    sk, pk = crypto.x25519_keypair()
    refused(crypto.agree, sk, pk[:31], info=b"i")
    refused(crypto.agree, sk, pk + b"\0", info=b"i")
    refused(crypto.agree, sk[:16], pk, info=b"i")
    with pytest.raises(ConfigurationError):
        crypto.agree(sk, pk, info="not bytes")


def test_seal_open_round_trip():
    key = os.urandom(32)
    blob = crypto.seal(key, b"share bytes", aad=b"u->v")
    assert len(blob) == 12 + len(b"share bytes") + 16
    assert crypto.open_sealed(key, blob, aad=b"u->v") == b"share bytes"
    assert crypto.seal(key, b"share bytes", aad=b"u->v") != blob  # fresh nonce
    assert crypto.open_sealed(key, crypto.seal(key, b"", aad=b""), aad=b"") == b""


def test_tampering_is_refused():
    key = os.urandom(32)
    blob = crypto.seal(key, b"secret share", aad=b"ctx")
    for i in range(len(blob)):
        flipped = bytearray(blob)
        flipped[i] ^= 0x01
        refused(crypto.open_sealed, key, bytes(flipped), aad=b"ctx")
    refused(crypto.open_sealed, key, blob, aad=b"other ctx")
    refused(crypto.open_sealed, os.urandom(32), blob, aad=b"ctx")
    for cut in (0, 5, 12, 27, len(blob) - 1):
        refused(crypto.open_sealed, key, blob[:cut], aad=b"ctx")
    refused(crypto.open_sealed, key, "not bytes", aad=b"ctx")


def test_bad_local_keys_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        crypto.seal(bytes(16), b"x", aad=b"")
    with pytest.raises(ConfigurationError):
        crypto.x25519_public(bytes(31))
    with pytest.raises(ConfigurationError):
        crypto.sign(bytes(31), b"m")


def test_signatures():
    sk, pk = crypto.ed25519_keypair()
    sig = crypto.sign(sk, b"round 3 survivors")
    assert len(sig) == 64
    crypto.verify(pk, sig, b"round 3 survivors")
    refused(crypto.verify, pk, sig, b"round 3 survivorz")
    for i in (0, 31, 63):
        flipped = bytearray(sig)
        flipped[i] ^= 0x80
        refused(crypto.verify, pk, bytes(flipped), b"round 3 survivors")
    _, other_pk = crypto.ed25519_keypair()
    refused(crypto.verify, other_pk, sig, b"round 3 survivors")
    refused(crypto.verify, pk, sig[:63], b"round 3 survivors")
    refused(crypto.verify, pk[:31], sig, b"round 3 survivors")
    refused(crypto.verify, bytes(32), sig, b"round 3 survivors")


def test_deterministic_randomness_reproduces_keys_and_os_does_not():
    for keypair in (crypto.x25519_keypair, crypto.ed25519_keypair):
        a = keypair(InsecureDeterministicRandomness(b"kat"))
        b = keypair(InsecureDeterministicRandomness(b"kat"))
        assert a == b
        assert keypair() != keypair()
    r1, r2 = InsecureDeterministicRandomness(b"n"), InsecureDeterministicRandomness(b"n")
    key = os.urandom(32)
    assert crypto.seal(key, b"m", aad=b"", randomness=r1) == crypto.seal(key, b"m", aad=b"", randomness=r2)


def test_hkdf_info_is_injective_on_tricky_cases():
    cases = [
        ("ab", "c"), ("a", "bc"), ("abc",), ("ab", "", "c"), (),
        (1,), (b"\x01",), ((1).to_bytes(8, "little"),), ("\x01",),
        ("x",), (b"x",), (0,), (0, 0), (b"",), ("",), (2**64 - 1,),
    ]
    encoded = [crypto.hkdf_info(*parts) for parts in cases]
    assert len(set(encoded)) == len(cases)
    assert all(e.startswith(b"secfl-v1") for e in encoded)
    assert crypto.hkdf_info("s", 1) == crypto.hkdf_info("s", 1)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.0, None, True, ["a"]])
def test_hkdf_info_refuses_bad_parts(bad):
    with pytest.raises(ConfigurationError):
        crypto.hkdf_info("label", bad)
