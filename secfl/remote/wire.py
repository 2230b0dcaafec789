"""The requests and replies ``RemoteServer`` and ``RemoteClient`` exchange: JSON objects of ints, floats,
strings and hex-encoded bytes, read with a strict schema (never code). A malformed message is refused with
``ProtocolIntegrityError``: the one opaque error of the protocol."""

from __future__ import annotations

import json
from typing import Any

from secfl.exceptions import ProtocolIntegrityError

__all__ = ["pack", "unpack", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 1 << 30  # a request or reply above 1 GiB is refused before parsing


def pack(kind: str, **fields: Any) -> bytes:
    """One message: ``kind`` plus fields (bytes values travel as hex)."""
    body = {"kind": kind, **{k: {"hex": v.hex()} if isinstance(v, (bytes, bytearray)) else v for k, v in fields.items()}}
    return json.dumps(body, separators=(",", ":")).encode()


def unpack(data: object, *kinds: str) -> dict[str, Any]:
    """The fields of a message of one of ``kinds`` (hex fields back to bytes)."""
    try:
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
            raise ValueError
        body = json.loads(bytes(data))
        if not isinstance(body, dict) or body.get("kind") not in kinds:
            raise ValueError
        return {k: bytes.fromhex(v["hex"]) if isinstance(v, dict) and set(v) == {"hex"} else v
                for k, v in body.items()}
    except (ValueError, TypeError, UnicodeDecodeError):
        raise ProtocolIntegrityError() from None
