"""A bound SecAgg instance: (session, round, group, roster) and the digest every message and key is bound to.

Threat model: the server chooses sessions, rounds, groups and rosters, and may show different clients
different ones. Binding the exact roster (hence n) into a digest that enters every signature, every
key derivation and every message header means two clients that were shown different rosters are in
different instances: neither accepts the other's keys, shares or signatures. The same holds for the
context: clients that received different models (the model-inconsistency attack) cannot share an
instance, so the server cannot make every member but one contribute a zero update. A client checks the
roster itself (its own id is in it, its size is the n its parameters were derived for), so the
server cannot grow an instance beyond n members or shrink it below what the client accepts.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

from secfl.exceptions import ConfigurationError, MalformedMessageError
from secfl.hazmat import crypto, wire
from secfl.hazmat.codec import Reader, Writer

SESSION_BYTES = 16
DIGEST_BYTES = 32
MAX_CLIENT_ID = 2**31 - 3  # Shamir evaluation points are id + 1 < 2^31 - 1
MAX_ROSTER = 1_000_000
KIND_INVITE = 23  # outside the message kinds of secagg_messages (10..22)


@dataclass(frozen=True)
class Instance:
    """One protocol instance: a fresh session id, the round, the group index, the sorted roster and the
    context (the digest of the model and round configuration a client trained on, ``binding.model_context``;
    empty: unbound). Members whose contexts differ are in different instances.

    Raises:
        ConfigurationError: a session that is not 16 bytes, negative round/group, a roster that is
            not strictly increasing ids in [0, MAX_CLIENT_ID].
    """

    session: bytes
    round: int
    group: int
    roster: tuple[int, ...]
    context: bytes = b""
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.session, (bytes, bytearray)) or len(self.session) != SESSION_BYTES:
            raise ConfigurationError(f"session must be {SESSION_BYTES} bytes; draw it from the CSPRNG")
        for name in ("round", "group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 63:
                raise ConfigurationError(f"{name}={value!r} must be an int in [0, 2^63)")
        roster = tuple(_as_id(c) for c in self.roster)
        if any(a >= b for a, b in zip(roster, roster[1:])):
            raise ConfigurationError("roster must list distinct client ids in increasing order; pass sorted(set(ids))")
        if not isinstance(self.context, (bytes, bytearray)) or len(self.context) not in (0, DIGEST_BYTES):
            raise ConfigurationError(f"context must be empty or {DIGEST_BYTES} bytes (binding.model_context)")
        object.__setattr__(self, "session", bytes(self.session))
        object.__setattr__(self, "context", bytes(self.context))
        object.__setattr__(self, "roster", roster)
        if self.context:  # bound to the model the client trained on (another label: never equal to an unbound D)
            info = crypto.hkdf_info("secagg-instance-bound", self.session, self.round, self.group, len(roster),
                                    self.context)
        else:
            info = crypto.hkdf_info("secagg-instance", self.session, self.round, self.group, len(roster))
        digest = hashlib.sha256(info)
        digest.update(b"".join(c.to_bytes(4, "little") for c in roster))
        object.__setattr__(self, "digest", digest.digest())

    @property
    def n(self) -> int:
        return len(self.roster)

    def index(self, client: int) -> int:
        """The position of ``client`` in the roster (binary search); -1 if absent."""
        lo, hi = 0, len(self.roster)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.roster[mid] < client:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self.roster) and self.roster[lo] == client else -1

    def __contains__(self, client: object) -> bool:
        return isinstance(client, int) and self.index(client) >= 0


def _as_id(value: object) -> int:
    try:
        client = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigurationError(f"client ids must be ints, got {type(value).__name__}") from None
    if not 0 <= client <= MAX_CLIENT_ID:
        raise ConfigurationError(f"client id {client} is outside [0, {MAX_CLIENT_ID}]")
    return client


def encode_invite(instance: Instance) -> bytes:
    """The server's invitation to an instance: session, round, group and roster (for a transport)."""
    body = Writer().raw(instance.session).u64(instance.round).u32(instance.group).ids(instance.roster)
    return wire.frame(KIND_INVITE, body.payload())


def decode_invite(data: object, *, max_roster: int = MAX_ROSTER) -> Instance:
    """Parse an invitation; anything that is not a well-formed one raises ``MalformedMessageError``."""
    reader = Reader(wire.unframe(data, kind=KIND_INVITE))
    session, round_, group = reader.raw(SESSION_BYTES), reader.u64(), reader.u32()
    roster = reader.ids(max_count=max_roster)
    reader.done()
    try:
        return Instance(session, round_, group, roster)
    except ConfigurationError as error:
        raise MalformedMessageError(f"invalid invitation: {error}") from None


def roster_of(ids: Sequence[int]) -> tuple[int, ...]:
    """A roster from any collection of distinct ids."""
    ordered = sorted(_as_id(c) for c in ids)
    if len(set(ordered)) != len(ordered):
        raise ConfigurationError("a roster cannot list a client twice")
    return tuple(ordered)
