"""Wire messages of SecAgg/SecAgg+: a common header that binds every message to its round, then a body.

Header: session (16 B) | round u64 | group u32 | sender u32 | recipient u32; the server's id is
``SERVER``. A decoder checks the frame (``hazmat.wire``), the kind, every field's bounds
(``MalformedMessageError``) and then that the header is exactly the one expected: a replayed,
cross-round, cross-group or misaddressed message raises ``ProtocolIntegrityError``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from secfl.exceptions import ProtocolIntegrityError
from secfl.hazmat import wire
from secfl.hazmat.codec import Reader, Writer

SERVER = 0xFFFFFFFF
SESSION_BYTES = 16
KEY_BYTES, SIG_BYTES = 32, 64
SHARE_WORDS = 9  # field elements per shared 32-byte secret (hazmat.shamir)
SHARE_PLAINTEXT = 8 + 2 * 4 * SHARE_WORDS
SHARE_CIPHERTEXT = 12 + SHARE_PLAINTEXT + 16  # AES-GCM nonce + plaintext + tag

ADVERTISE, KEYS, SHARES, CIPHERTEXTS, MASKED, SURVIVORS, CONSISTENCY, UNMASK_REQUEST, UNMASK = range(10, 19)
SELF_MASK, KEY_SHARE = 0, 1


@dataclass(frozen=True)
class Header:
    session: bytes
    round: int
    group: int
    sender: int
    recipient: int

    def reply(self) -> Header:
        return Header(self.session, self.round, self.group, self.recipient, self.sender)


def encode(kind: int, header: Header, body: Writer) -> bytes:
    """A framed message: header fields then the body."""
    head = Writer().raw(header.session).u64(header.round).u32(header.group).u32(header.sender).u32(header.recipient)
    return wire.frame(kind, head.payload() + body.payload())


def open_message(data: bytes, *, kind: int, expect: Header, max_bytes: int) -> Reader:
    """Check frame, kind and header; return a reader positioned at the body.

    Raises:
        MalformedMessageError: not a well-formed frame of this kind.
        ProtocolIntegrityError: a header other than ``expect`` (replay, other round, group or party).
    """
    reader = Reader(wire.unframe(data, kind=kind, max_bytes=max_bytes))
    got = Header(reader.raw(SESSION_BYTES), reader.u64(), reader.u32(), reader.u32(), reader.u32())
    if got != expect:
        raise ProtocolIntegrityError()
    return reader


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


def read_entry(reader: Reader, client: int | None = None) -> KeyEntry:
    cid = reader.u32() if client is None else client
    return KeyEntry(cid, reader.raw(KEY_BYTES), reader.raw(KEY_BYTES), reader.raw(COMMITMENT_BYTES),
                    reader.raw(SIG_BYTES))


COMMITMENT_BYTES = 32
ENTRY_BYTES = 4 + 2 * KEY_BYTES + COMMITMENT_BYTES + SIG_BYTES


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
            raise ProtocolIntegrityError()
        out[peer] = blob
    return out


def write_shares(writer: Writer, shares: dict[int, tuple[int, np.ndarray]]) -> Writer:
    writer.u32(len(shares))
    for peer in sorted(shares):
        kind, elements = shares[peer]
        writer.u32(peer).u8(kind).raw(np.asarray(elements, dtype="<u4").tobytes())
    return writer


def read_shares(reader: Reader, *, max_count: int) -> dict[int, tuple[int, np.ndarray]]:
    n = reader.count(item_size=5 + 4 * SHARE_WORDS, max_count=max_count)
    out: dict[int, tuple[int, np.ndarray]] = {}
    for _ in range(n):
        peer, kind = reader.u32(), reader.u8()
        elements = np.frombuffer(reader.raw(4 * SHARE_WORDS), dtype="<u4").astype(np.uint64)
        if peer in out or kind not in (SELF_MASK, KEY_SHARE):
            raise ProtocolIntegrityError()
        out[peer] = (kind, elements)
    return out
