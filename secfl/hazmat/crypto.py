"""Key agreement (X25519 + HKDF-SHA256), authenticated encryption (AES-256-GCM) and signatures (Ed25519).

Threat model: public keys, ciphertexts and signatures come off the wire from a possibly malicious
server or client, so every check on them fails with the opaque ``ProtocolIntegrityError`` (never
saying which check failed, never echoing key material). Local mistakes (a wrong key length for a key
we hold) are ``ConfigurationError``. Derived keys are bound to their context through ``hkdf_info``;
GCM nonces are 96 random bits, so one key must not seal more than about 2^32 messages.
"""

from __future__ import annotations

import hmac
import numbers
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError
from secfl.hazmat.randomness import OS_RANDOM, Randomness

__all__ = [
    "KEY_BYTES", "NONCE_BYTES", "TAG_BYTES", "SIGNATURE_BYTES",
    "x25519_keypair", "x25519_public", "agree", "seal", "open_sealed",
    "ed25519_keypair", "sign", "verify", "hkdf_info",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
SIGNATURE_BYTES = 64
INFO_PREFIX = b"secfl-v1"
_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_LEN = struct.Struct("<I")
_KIND_BYTES, _KIND_INT, _KIND_STR = b"\x01", b"\x02", b"\x03"


def _local_key(key: object, name: str) -> bytes:
    """A key we hold ourselves: wrong type or length is a programming error."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
        raise ConfigurationError(f"{name} must be {KEY_BYTES} bytes, got {got}; pass the raw 32-byte key")
    return bytes(key)


def _wire_key(key: object) -> bytes:
    """A key that may come off the wire: anything wrong is an integrity failure."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_BYTES:
        raise ProtocolIntegrityError()
    return bytes(key)


def _context(value: object, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise ConfigurationError(f"{name} must be bytes, got {type(value).__name__}; build it with hkdf_info(...)")
    return bytes(value)


def x25519_keypair(randomness: Randomness = OS_RANDOM) -> tuple[bytes, bytes]:
    """A fresh X25519 key pair.

    Args:
        randomness: source of the 32 private bytes (OS CSPRNG by default).

    Returns:
        (private key 32 B, public key 32 B).
    """
    private = randomness.bytes(KEY_BYTES)
    return private, x25519_public(private)


def x25519_public(private: bytes) -> bytes:
    """The 32-byte public key of an X25519 private key.

    Raises:
        ConfigurationError: ``private`` is not 32 bytes.
    """
    key = X25519PrivateKey.from_private_bytes(_local_key(private, "private"))
    return key.public_key().public_bytes(*_RAW)


def agree(private: bytes, peer_public: bytes, *, info: bytes) -> bytes:
    """X25519 with the peer, then HKDF-SHA256 (no salt) to a 32-byte key bound to ``info``.

    Args:
        private: our 32-byte X25519 private key.
        peer_public: the peer's 32-byte public key (untrusted).
        info: binding context, from ``hkdf_info``.

    Returns:
        32-byte shared key; both sides get the same key for the same ``info``.

    Raises:
        ProtocolIntegrityError: a key of the wrong length, or a low-order peer key (all-zero secret).
        ConfigurationError: ``info`` is not bytes.
    """
    info = _context(info, "info")
    try:
        ours = X25519PrivateKey.from_private_bytes(_wire_key(private))
        shared = ours.exchange(X25519PublicKey.from_public_bytes(_wire_key(peer_public)))
    except ValueError:  # pyca refuses the all-zero output of a low-order point
        raise ProtocolIntegrityError() from None
    if hmac.compare_digest(shared, bytes(len(shared))):
        raise ProtocolIntegrityError()
    return derive(shared, info=info)


def derive(secret: bytes, *, info: bytes) -> bytes:
    """HKDF-SHA256 (no salt) of a high-entropy ``secret`` into a 32-byte single-use key bound to ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=_context(info, "info")).derive(secret)


def seal(key: bytes, plaintext: bytes, *, aad: bytes, randomness: Randomness = OS_RANDOM) -> bytes:
    """AES-256-GCM encryption with a random 12-byte nonce.

    Args:
        key: 32-byte key.
        plaintext: bytes to protect.
        aad: authenticated but unencrypted context (e.g. sender, receiver, session).
        randomness: source of the nonce (OS CSPRNG by default).

    Returns:
        nonce (12 B) || ciphertext || tag (16 B).

    Raises:
        ConfigurationError: bad key length, or non-bytes plaintext/aad.
    """
    aead = AESGCM(_local_key(key, "key"))
    nonce = randomness.bytes(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, _context(plaintext, "plaintext"), _context(aad, "aad"))


def open_sealed(key: bytes, blob: bytes, *, aad: bytes) -> bytes:
    """Decrypt and authenticate a ``seal`` output.

    Args:
        key: 32-byte key.
        blob: nonce || ciphertext || tag (untrusted).
        aad: the context given to ``seal``.

    Returns:
        The plaintext.

    Raises:
        ProtocolIntegrityError: short or non-bytes blob, wrong key, tampered data, or wrong aad.
        ConfigurationError: bad key length or non-bytes aad.
    """
    aead = AESGCM(_local_key(key, "key"))
    aad = _context(aad, "aad")
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise ProtocolIntegrityError()
    blob = bytes(blob)
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise ProtocolIntegrityError() from None


def ed25519_keypair(randomness: Randomness = OS_RANDOM) -> tuple[bytes, bytes]:
    """A fresh Ed25519 signing key pair.

    Args:
        randomness: source of the 32-byte private seed (OS CSPRNG by default).

    Returns:
        (private seed 32 B, public key 32 B).
    """
    private = randomness.bytes(KEY_BYTES)
    key = Ed25519PrivateKey.from_private_bytes(private)
    return private, key.public_key().public_bytes(*_RAW)


def sign(private: bytes, message: bytes) -> bytes:
    """Ed25519 signature (64 B) of ``message``.

    Raises:
        ConfigurationError: ``private`` is not 32 bytes or ``message`` is not bytes.
    """
    key = Ed25519PrivateKey.from_private_bytes(_local_key(private, "private"))
    return key.sign(_context(message, "message"))


def verify(public: bytes, signature: bytes, message: bytes) -> None:
    """Check an Ed25519 signature.

    Raises:
        ProtocolIntegrityError: bad key or signature length, invalid key, or the signature does not verify.
        ConfigurationError: ``message`` is not bytes.
    """
    message = _context(message, "message")
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != SIGNATURE_BYTES:
        raise ProtocolIntegrityError()
    try:
        Ed25519PublicKey.from_public_bytes(_wire_key(public)).verify(bytes(signature), message)
    except (InvalidSignature, ValueError):
        raise ProtocolIntegrityError() from None


def hkdf_info(*parts: bytes | int | str) -> bytes:
    """Unambiguous encoding of a key's binding context, for HKDF ``info`` and AEAD ``aad``.

    ``b"secfl-v1"`` then, per part: a kind byte (1 bytes, 2 int, 3 str), its length (u32 LE) and its
    bytes (ints as 8-byte LE unsigned, str as UTF-8). Distinct part tuples give distinct outputs.

    Args:
        parts: e.g. ``("secagg-mask", session_id, round, group, min(u, v), max(u, v))``.

    Returns:
        The encoded context.

    Raises:
        ConfigurationError: a part that is not bytes/int/str, or an int outside [0, 2^64).
    """
    out = [INFO_PREFIX]
    for i, part in enumerate(parts):
        if isinstance(part, (bytes, bytearray)):
            kind, data = _KIND_BYTES, bytes(part)
        elif isinstance(part, numbers.Integral) and not isinstance(part, bool):
            if not 0 <= part < 1 << 64:
                raise ConfigurationError(f"hkdf_info part {i} must be in [0, 2^64), got {part}; use unsigned ids")
            kind, data = _KIND_INT, int(part).to_bytes(8, "little")
        elif isinstance(part, str):
            kind, data = _KIND_STR, part.encode("utf-8")
        else:
            raise ConfigurationError(
                f"hkdf_info part {i} must be bytes, int or str, got {type(part).__name__}; convert it first")
        out += [kind, _LEN.pack(len(data)), data]
    return b"".join(out)
