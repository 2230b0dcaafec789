"""The requests and replies ``RemoteServer`` and ``RemoteClient`` exchange.

A message is ``u32 header length | header | payload``: the header a JSON object (``kind`` and small fields;
bytes as hex), the payload the protocol's own bytes, raw, so the framing adds only the header. Read with a
strict schema (never code): a malformed message is refused with ``ProtocolIntegrityError``, the protocol's
one opaque error.
"""

from __future__ import annotations

import json
from typing import Any

from secfl.exceptions import ProtocolIntegrityError

__all__ = ["pack", "unpack", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 1 << 30  # a request or reply above 1 GiB is refused before parsing
_MAX_HEADER = 1 << 20


def pack(kind: str, payload: bytes = b"", **fields: Any) -> bytes:
    """One message: ``kind``, small ``fields`` (bytes values as hex) and a raw ``payload``."""
    header = {"kind": kind, **{k: {"hex": v.hex()} if isinstance(v, (bytes, bytearray)) else v
                               for k, v in fields.items()}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    return len(raw).to_bytes(4, "little") + raw + bytes(payload)


def unpack(data: object, *kinds: str) -> dict[str, Any]:
    """The fields of a message of one of ``kinds`` (hex fields back to bytes; the payload as ``"payload"``)."""
    try:
        if not isinstance(data, (bytes, bytearray)) or not 4 <= len(data) <= MAX_MESSAGE_BYTES:
            raise ValueError
        size = int.from_bytes(data[:4], "little")
        if size > min(_MAX_HEADER, len(data) - 4):
            raise ValueError
        header = json.loads(bytes(data[4:4 + size]), parse_constant=_no_constant)
        if not isinstance(header, dict) or header.get("kind") not in kinds or "payload" in header:
            raise ValueError
        fields = {k: bytes.fromhex(v["hex"]) if isinstance(v, dict) and set(v) == {"hex"} else v
                  for k, v in header.items()}
        fields["payload"] = bytes(data[4 + size:])
        return fields
    except (ValueError, TypeError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting a peer chose
        raise ProtocolIntegrityError() from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
