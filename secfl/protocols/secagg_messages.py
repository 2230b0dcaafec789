"""Wire messages of SecAgg/SecAgg+: a header that binds every message to its instance, then a body.

Header: instance digest (32 B, see ``secagg_instance``) | sender u32 | recipient u32; the server's id
is ``SERVER``. A decoder takes any bytes-like input, checks the frame (``hazmat.wire``), the kind,
every field's bounds (``MalformedMessageError``) and then that the header is exactly the one
expected: a replayed, cross-instance or misaddressed message raises ``ProtocolIntegrityError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secfl.exceptions import MalformedMessageError, ProtocolIntegrityError
from secfl.hazmat import wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols.secagg_instance import DIGEST_BYTES

SERVER = 0xFFFFFFFF
KEY_BYTES, SIG_BYTES, COMMITMENT_BYTES = 32, 64, 32
SHARE_WORDS = 9  # field elements per shared 32-byte secret (hazmat.shamir)
DIGEST = 32
SHARE_PLAINTEXT = 8 + 2 * 4 * SHARE_WORDS + 64  # ids, both shares, the dealer's signature over their digests
SHARE_CIPHERTEXT = 12 + SHARE_PLAINTEXT + 16  # AES-GCM nonce + plaintext + tag
SIGNED_SHARE = 4 * SHARE_WORDS + DIGEST + 64  # elements, the other share's digest, the dealer's signature
SHARE_ENTRY = 5 + SIGNED_SHARE  # an UNMASK entry: peer u32, kind u8, then a signed share
ENTRY_BYTES = 4 + 2 * KEY_BYTES + COMMITMENT_BYTES + SIG_BYTES
HEADER_BYTES = DIGEST_BYTES + 8

(ADVERTISE, KEYS, SHARES, CIPHERTEXTS, ACCEPTED, QUALIFIED, MASKED, SURVIVORS, CONSISTENCY, UNMASK_REQUEST,
 UNMASK, CONVICTION, PAIR_KEYS) = range(10, 23)
SELF_MASK, KEY_SHARE = 0, 1


@dataclass(frozen=True)
class Header:
    instance: bytes  # the instance digest
    sender: int
    recipient: int

    def reply(self) -> Header:
        return Header(self.instance, self.recipient, self.sender)


def encode(kind: int, header: Header, body: Writer) -> bytes:
    """A framed message: header fields then the body."""
    head = Writer().raw(header.instance).u32(header.sender).u32(header.recipient)
    return wire.frame(kind, head.payload() + body.payload())


def open_message(data: object, *, kind: int, expect: Header, max_bytes: int) -> Reader:
    """Check frame, kind and header; return a reader positioned at the body.

    Raises:
        MalformedMessageError: not a bytes-like, well-formed frame of this kind.
        ProtocolIntegrityError: a header other than ``expect`` (replay, other instance or party).
    """
    reader = Reader(wire.unframe(data, kind=kind, max_bytes=max_bytes))
    got = Header(reader.raw(DIGEST_BYTES), reader.u32(), reader.u32())
    if got != expect:
        raise ProtocolIntegrityError()
    return reader


def max_message_bytes(k: int, length: int, itemsize: int) -> int:
    """A cap on any SecAgg message of a client with k neighbours and vectors of ``length`` words."""
    per_peer = ENTRY_BYTES + SHARE_CIPHERTEXT + 8 + SIG_BYTES + 4 * (k + 1) + 8 + 2 * SHARE_ENTRY + 64
    conviction = k * k * (4 + SIGNED_SHARE)  # at most every neighbour convicted, k shares each
    return 256 + (k + 1) * per_peer + conviction + length * itemsize


# Bodies ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyEntry:
    """A client's advertised round keys, c (share encryption) and s (masks), and a hash commitment to
    its self-mask seed (so a reconstructed seed can be checked), signed with its long-term key."""

    client: int
    c_public: bytes
    s_public: bytes
    commitment: bytes
    signature: bytes


def write_entry(writer: Writer, entry: KeyEntry) -> Writer:
    return (writer.u32(entry.client).raw(entry.c_public).raw(entry.s_public).raw(entry.commitment)
            .raw(entry.signature))


def read_entry(reader: Reader) -> KeyEntry:
    return KeyEntry(reader.u32(), reader.raw(KEY_BYTES), reader.raw(KEY_BYTES), reader.raw(COMMITMENT_BYTES),
                    reader.raw(SIG_BYTES))


def read_ids(reader: Reader, *, max_count: int) -> tuple[int, ...]:
    """A list of distinct ids in increasing order (anything else is malformed)."""
    ids = reader.ids(max_count=max_count)
    if any(a >= b for a, b in zip(ids, ids[1:])):
        raise MalformedMessageError("id list not strictly increasing")
    return ids


def write_blobs(writer: Writer, blobs: dict[int, bytes]) -> Writer:
    writer.u32(len(blobs))
    for peer in sorted(blobs):
        writer.u32(peer).blob(blobs[peer])
    return writer


def read_blobs(reader: Reader, *, max_count: int, blob_size: int) -> dict[int, bytes]:
    n = reader.count(item_size=8 + blob_size, max_count=max_count)
    out: dict[int, bytes] = {}
    for _ in range(n):
        peer, blob = reader.u32(), reader.blob(max_size=blob_size)
        if peer in out or len(blob) != blob_size:
            raise MalformedMessageError("repeated peer or wrong-sized blob")
        out[peer] = blob
    return out


def write_signed(writer: Writer, elements: np.ndarray, other: bytes, signature: bytes) -> Writer:
    return writer.raw(np.asarray(elements, dtype="<u4").tobytes()).raw(other).raw(signature)


def read_signed(reader: Reader) -> tuple[np.ndarray, bytes, bytes]:
    elements = np.frombuffer(reader.raw(4 * SHARE_WORDS), dtype="<u4").astype(np.uint64)
    return elements, reader.raw(DIGEST), reader.raw(SIG_BYTES)


def write_shares(writer: Writer, shares: dict[int, tuple[int, np.ndarray, bytes, bytes]]) -> Writer:
    """Revealed shares: peer -> (kind, 9 elements, the other share's digest, the dealer's signature)."""
    writer.u32(len(shares))
    for peer in sorted(shares):
        kind, *signed = shares[peer]
        write_signed(writer.u32(peer).u8(kind), *signed)
    return writer


def read_shares(reader: Reader, *, max_count: int) -> dict[int, tuple[int, np.ndarray, bytes, bytes]]:
    n = reader.count(item_size=SHARE_ENTRY, max_count=max_count)
    out: dict[int, tuple[int, np.ndarray, bytes, bytes]] = {}
    for _ in range(n):
        peer, kind = reader.u32(), reader.u8()
        signed = read_signed(reader)
        if peer in out or kind not in (SELF_MASK, KEY_SHARE):
            raise MalformedMessageError("repeated peer or unknown share kind")
        out[peer] = (kind, *signed)
    return out


def write_conviction(writer: Writer, owner: int, kind: int, shares: dict[int, tuple[np.ndarray, bytes, bytes]]
                     ) -> Writer:
    """The proof that ``owner`` dealt bad shares: the shares its holders revealed, as ``owner`` signed them."""
    writer.u32(owner).u8(kind).u32(len(shares))
    for holder in sorted(shares):
        write_signed(writer.u32(holder), *shares[holder])
    return writer


def read_conviction(reader: Reader, *, max_count: int) -> tuple[int, int, dict[int, tuple[np.ndarray, bytes, bytes]]]:
    owner, kind = reader.u32(), reader.u8()
    if kind not in (SELF_MASK, KEY_SHARE):
        raise MalformedMessageError("unknown share kind")
    n = reader.count(item_size=4 + SIGNED_SHARE, max_count=max_count)
    shares: dict[int, tuple[np.ndarray, bytes, bytes]] = {}
    for _ in range(n):
        holder = reader.u32()
        if holder in shares:
            raise MalformedMessageError("repeated holder")
        shares[holder] = read_signed(reader)
    return owner, kind, shares


def write_statements(writer: Writer, statements: dict[int, tuple[tuple[int, ...], bytes]]) -> Writer:
    """Neighbours' signed survivor statements: (signer, the ids it called alive, signature)."""
    writer.u32(len(statements))
    for signer in sorted(statements):
        alive, signature = statements[signer]
        writer.u32(signer).ids(alive).raw(signature)
    return writer


def read_statements(reader: Reader, *, max_count: int) -> dict[int, tuple[tuple[int, ...], bytes]]:
    n = reader.count(item_size=8 + SIG_BYTES, max_count=max_count)
    out: dict[int, tuple[tuple[int, ...], bytes]] = {}
    for _ in range(n):
        signer = reader.u32()
        alive, signature = read_ids(reader, max_count=max_count), reader.raw(SIG_BYTES)
        if signer in out:
            raise MalformedMessageError("repeated signer")
        out[signer] = (alive, signature)
    return out
