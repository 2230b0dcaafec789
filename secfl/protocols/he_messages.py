"""Wire messages of the homomorphic secure sum (``HeSum``) and every check that runs before TenSEAL parses.

Each message is one frame (``hazmat.wire``); integers little-endian; ``round_id`` is 16 random
bytes per round; ``fingerprint`` is SHA-256 of the round's public context bytes.

| kind | from -> to | payload |
|---|---|---|
| 20 CONTEXT | key holder -> aggregator -> clients | round_id, context (u32 length + bytes), signature (u32 + 64) |
| 21 UPLOAD | client -> aggregator | round_id, group u32, client u32, fingerprint, d u32, vector (u32 + bytes), signature |
| 22 SUM | aggregator -> key holder | round_id, group u32, fingerprint, d u32, count u32, count x UPLOAD (u32 + bytes) |
| 23 RESULT | key holder -> aggregator | round_id, group u32, then a wire vector frame (u64 words or f64) |

Signatures are Ed25519 over ``hkdf_info`` statements (kind-tagged, length-prefixed parts):
("he-context", round_id, fingerprint) by the key holder, and ("he-upload", round_id, group, client,
fingerprint, d, SHA-256(vector)) by the client. ``vector`` is TenSEAL's serialized BFVVector/CKKSVector.
SUM carries the group's signed UPLOADs themselves, not a sum: the key holder checks each one exactly
as the aggregator does and adds them itself, so it never decrypts anything but the sum of signed
uploads of that round and group.

Threat model: every byte is attacker-controlled (outsiders on the network; towards the key holder,
a malicious aggregator that writes every SUM). Any failure raises ``MalformedMessageError`` (bytes
that do not parse) or the opaque ``ProtocolIntegrityError`` (everything else).

Receivers check, in this order, before any byte reaches TenSEAL: the frame and its size cap
(``MalformedMessageError``); round, sender, fingerprint and d against what they expect
(``ProtocolIntegrityError``); the vector's size against the bounds of (params, d) (malformed); the
signature (integrity); then the vector's exact protobuf layout (one packed ``sizes`` field equal to
the expected chunk sizes, exactly ceil(d / slots) ciphertexts each within the size bounds and with a
SEAL header declaring that size, and for CKKS the expected scale) (malformed).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Sequence

import numpy as np

from secfl.exceptions import MalformedMessageError, ProtocolIntegrityError
from secfl.hazmat import crypto, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols.he_params import HeParams

CONTEXT, UPLOAD, SUM, RESULT = 20, 21, 22, 23
ROUND_ID_BYTES = 16
FINGERPRINT_BYTES = 32
SIG_BYTES = crypto.SIGNATURE_BYTES
MAX_CONTEXT_BYTES = 1 << 27  # a public key at N = 32768 with 16 primes is < 20 MB
_SEAL_MAGIC = b"\x5e\xa1"
_SEAL_HEADER = struct.Struct("<2sBBBBHQ")  # magic, header size, version major, minor, compr mode, reserved, size
_DOUBLE = struct.Struct("<d")


def fingerprint(context: bytes) -> bytes:
    """SHA-256 of a serialized public context: what uploads and sums are bound to."""
    return hashlib.sha256(context).digest()


def context_statement(round_id: bytes, digest: bytes) -> bytes:
    return crypto.hkdf_info("he-context", round_id, digest)


def upload_statement(round_id: bytes, group: int, client: int, digest: bytes, d: int,
                     vector: bytes | memoryview) -> bytes:
    return crypto.hkdf_info("he-upload", round_id, group, client, digest, d, hashlib.sha256(vector).digest())


# CONTEXT ---------------------------------------------------------------------------------------

def encode_context(round_id: bytes, context: bytes, signing_key: bytes) -> bytes:
    signature = crypto.sign(signing_key, context_statement(round_id, fingerprint(context)))
    return wire.frame(CONTEXT, Writer().raw(round_id).blob(context).blob(signature).payload())


def open_context(message: bytes, *, round_id: bytes, signer: bytes) -> tuple[bytes, bytes]:
    """Check a CONTEXT message; return (public context bytes, fingerprint). Parse nothing before the signature.

    Raises:
        MalformedMessageError: bad frame or fields.
        ProtocolIntegrityError: another round, or not signed by the key holder ``signer``.
    """
    reader = Reader(wire.unframe(message, kind=CONTEXT, max_bytes=MAX_CONTEXT_BYTES + 256))
    got_round = reader.raw(ROUND_ID_BYTES)
    context, signature = reader.blob(max_size=MAX_CONTEXT_BYTES), reader.blob(max_size=SIG_BYTES)
    reader.done()
    if got_round != round_id:
        raise ProtocolIntegrityError()
    digest = fingerprint(context)
    crypto.verify(signer, signature, context_statement(round_id, digest))
    return context, digest


# UPLOAD ----------------------------------------------------------------------------------------

def encode_upload(round_id: bytes, group: int, client: int, digest: bytes, d: int, vector: bytes,
                  signing_key: bytes) -> bytes:
    signature = crypto.sign(signing_key, upload_statement(round_id, group, client, digest, d, vector))
    body = Writer().raw(round_id).u32(group).u32(client).raw(digest).u32(d).blob(vector).blob(signature)
    return wire.frame(UPLOAD, body.payload())


def upload_cap(params: HeParams, d: int) -> int:
    """The largest UPLOAD an honest client of (params, d) can send."""
    return 8 + ROUND_ID_BYTES + 8 + FINGERPRINT_BYTES + 4 + 4 + params.vector_bytes(d)[1] + 4 + SIG_BYTES


def open_upload(message: bytes, *, params: HeParams, round_id: bytes, group: int, digest: bytes, d: int,
                public_key: Callable[[int], bytes], client: int | None = None) -> tuple[int, bytes]:
    """Check an UPLOAD completely; return (client, vector bytes), the bytes now safe to hand to TenSEAL.

    ``client``: the expected sender (None: any client, whose key ``public_key(client)`` must know).

    Raises:
        MalformedMessageError: bad frame, a vector outside the size bounds of (params, d), bad layout.
        ProtocolIntegrityError: another round, group, sender, context or length, an unknown client,
            or a missing or bad signature.
    """
    reader = Reader(wire.unframe(message, kind=UPLOAD, max_bytes=upload_cap(params, d)))
    got_round, got_group, sender = reader.raw(ROUND_ID_BYTES), reader.u32(), reader.u32()
    got_digest, got_d = reader.raw(FINGERPRINT_BYTES), reader.u32()
    low, high = params.vector_bytes(d)
    vector, signature = reader.blob(max_size=high), reader.blob(max_size=SIG_BYTES)
    reader.done()
    if (got_round, got_group, got_digest, got_d) != (round_id, group, digest, d) or client not in (None, sender):
        raise ProtocolIntegrityError()
    if len(vector) < low:
        raise MalformedMessageError(f"encrypted vector of {len(vector)} bytes, expected at least {low}")
    crypto.verify(public_key(sender), signature, upload_statement(round_id, group, sender, digest, d, vector))
    check_layout(vector, params=params, d=d)
    return sender, vector


# SUM -------------------------------------------------------------------------------------------

def encode_sum(round_id: bytes, group: int, digest: bytes, d: int, uploads: Sequence[bytes]) -> bytes:
    """The SUM asking for ``group``'s sum: the group's signed UPLOAD messages, forwarded unchanged."""
    body = Writer().raw(round_id).u32(group).raw(digest).u32(d).u32(len(uploads))
    for upload in uploads:
        body.blob(upload)
    return wire.frame(SUM, body.payload())


def open_sum(message: bytes, *, params: HeParams, round_id: bytes, digest: bytes, d: int,
             max_uploads: int) -> tuple[int, list[bytes]]:
    """Check a SUM's envelope; return (group, the UPLOAD messages), each still to be checked by ``open_upload``.

    Raises:
        MalformedMessageError: bad frame, more than ``max_uploads`` uploads, an oversize upload.
        ProtocolIntegrityError: another round, context or length.
    """
    cap = upload_cap(params, d)
    reader = Reader(wire.unframe(message, kind=SUM, max_bytes=8 + ROUND_ID_BYTES + 44 + max_uploads * (4 + cap)))
    got_round, group, got_digest, got_d = (reader.raw(ROUND_ID_BYTES), reader.u32(), reader.raw(FINGERPRINT_BYTES),
                                           reader.u32())
    count = reader.count(item_size=4 + 8 + ROUND_ID_BYTES, max_count=max_uploads)
    uploads = [reader.blob(max_size=cap) for _ in range(count)]
    reader.done()
    if (got_round, got_digest, got_d) != (round_id, digest, d):
        raise ProtocolIntegrityError()
    return group, uploads


# RESULT ----------------------------------------------------------------------------------------

def encode_result(round_id: bytes, group: int, values: np.ndarray) -> bytes:
    """``values``: int64 exact sums (sent as their u64 two's-complement words) or float64 rounded sums."""
    vector = values.view(np.uint64) if values.dtype == np.int64 else values.astype(np.float64)
    return wire.frame(RESULT, Writer().raw(round_id).u32(group).raw(wire.encode_vector(vector)).payload())


def open_result(message: bytes, *, round_id: bytes, group: int, d: int, scheme: str) -> np.ndarray:
    """The decrypted sum of ``group``: int64 for BFV, float64 for CKKS."""
    dtype = np.uint64 if scheme == "bfv" else np.float64
    payload = wire.unframe(message, kind=RESULT, max_bytes=8 + ROUND_ID_BYTES + 4 + 13 + 8 * d)
    reader = Reader(payload)
    if (reader.raw(ROUND_ID_BYTES), reader.u32()) != (round_id, group):
        raise ProtocolIntegrityError()
    values = wire.decode_vector(payload[ROUND_ID_BYTES + 4 :], length=d, dtype=dtype)
    return values.view(np.int64) if scheme == "bfv" else values


# TenSEAL's vector layout ------------------------------------------------------------------------

def check_layout(vector: bytes, *, params: HeParams, d: int) -> None:
    """Check that ``vector`` is exactly TenSEAL's protobuf encoding of a vector of ``d`` values under ``params``.

    Layout: field 1 (sizes, packed varints) equal to ``params.chunk_sizes(d)``; then one field 2
    (a SEAL ciphertext) per chunk, each within ``params.ciphertext_bytes()`` and starting with a
    SEAL header that declares exactly its length; then, for CKKS, field 3 (scale, a double) equal
    to 2^scale_bits; nothing else. This keeps TenSEAL from pairing mismatched chunk lists (its
    ``add`` indexes the ciphertexts by the other vector's count) and from seeing a foreign scale.

    Raises:
        MalformedMessageError: anything else.
    """
    data = memoryview(vector)
    pos = _expect_tag(data, 0, 0x0A)
    length, pos = _varint(data, pos)
    end = _within(data, pos, length)
    sizes = []
    while pos < end:
        size, pos = _varint(data, pos, end)
        sizes.append(size)
    if sizes != params.chunk_sizes(d):
        raise MalformedMessageError("encrypted vector chunk sizes do not match the round's length")
    low, high = params.ciphertext_bytes()
    for _ in sizes:
        pos = _expect_tag(data, pos, 0x12)
        length, pos = _varint(data, pos)
        end = _within(data, pos, length)
        if not low <= length <= high or length < _SEAL_HEADER.size:
            raise MalformedMessageError(f"ciphertext of {length} bytes, expected {low}..{high}")
        magic, header_size, _, _, _, _, declared = _SEAL_HEADER.unpack_from(data, pos)
        if bytes(magic) != _SEAL_MAGIC or header_size != _SEAL_HEADER.size or declared != length:
            raise MalformedMessageError("ciphertext header does not match its length")
        pos = end
    if params.scale is not None:
        pos = _expect_tag(data, pos, 0x19)
        end = _within(data, pos, _DOUBLE.size)
        if _DOUBLE.unpack_from(data, pos)[0] != params.scale:
            raise MalformedMessageError("encrypted vector has another scale than the round's")
        pos = end
    if pos != len(data):
        raise MalformedMessageError("trailing bytes after the encrypted vector")


def _expect_tag(data: memoryview, pos: int, tag: int) -> int:
    if pos >= len(data) or data[pos] != tag:
        raise MalformedMessageError("encrypted vector is not in TenSEAL's layout")
    return pos + 1


def _varint(data: memoryview, pos: int, end: int | None = None) -> tuple[int, int]:
    end = len(data) if end is None else end
    value = 0
    for shift in range(0, 35, 7):  # sizes and lengths fit 32 bits: at most 5 bytes
        if pos >= end:
            raise MalformedMessageError("truncated varint in encrypted vector")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise MalformedMessageError("varint too long in encrypted vector")


def _within(data: memoryview, pos: int, length: int) -> int:
    if length > len(data) - pos:
        raise MalformedMessageError("encrypted vector field runs past its end")
    return pos + length
