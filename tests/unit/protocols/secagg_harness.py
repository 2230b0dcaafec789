"""Drive one bound SecAgg instance stage by stage, so tests can play a malicious server (or client) between stages.

The parties are the honest ones ``SecAggPlus.clients`` / ``.server`` build, and the stages are the
shared driver's ``secagg_round.STEPS``: there is no second stage table here. ``Round(...).run()``
relays exactly as ``secagg_round.run_instance`` does.
"""

from __future__ import annotations

import os

import numpy as np

from secfl.hazmat import crypto
from secfl.hazmat.codec import Reader, Writer
from secfl.hazmat.wire import unframe
from secfl.protocols import SecAgg
from secfl.protocols import secagg_client as sc
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_round import STEPS


def _untouched(stage, direction, messages):
    return messages


class Round:
    """An instance over ``roster`` (default ``range(n)``) with random uint32 inputs, honest parties.

    The constructor runs ``advertise_keys`` (unless ``advertise=False``); each ``step`` runs the next
    stage: the clients consume ``replies`` and the server answers. ``tamper(stage, direction,
    messages) -> messages`` rewrites messages in flight, as in ``run_instance``.
    """

    def __init__(self, n=5, d=8, protocol=None, seed=0, session=None, round_=1, group=0, roster=None,
                 inputs=None, tamper=None, advertise=True):
        self.protocol = protocol or SecAgg()
        roster = tuple(roster) if roster is not None else tuple(range(n))
        self.instance = Instance(session or os.urandom(16), round_, group, roster)
        self.params = self.protocol.params(self.instance.n)
        rng = np.random.default_rng(seed)
        self.inputs = inputs or {c: rng.integers(0, 2**20, size=d).astype(np.uint32) for c in roster}
        self.d = d
        self.clients = self.protocol.clients(self.instance, self.inputs)
        self.server = self.protocol.server(self.instance, length=d, dtype=np.uint32)
        self.tamper = tamper or _untouched
        self.done: list[str] = []
        self.sent: dict = {}
        self.replies: dict = {}
        if advertise:
            self.step()

    # driving ---------------------------------------------------------------------------------

    @property
    def next_stage(self) -> str:
        return STAGES[len(self.done)]

    def step(self, skip=()):
        """Run the next stage; clients in ``skip`` stay silent. Returns the server's output."""
        stage = self.next_stage
        if stage == STAGES[0]:
            up = {c: client.advertise_keys() for c, client in self.clients.items() if c not in skip}
            self.sent = self.tamper(stage, "up", up)
            out = self.server.receive_advertise(self.sent)
        else:
            name, client_step, server_step = STEPS[len(self.done) - 1]
            assert name == stage
            up = {c: client_step(self.clients[c], r) for c, r in self.replies.items()
                  if c not in skip and c in self.clients}
            self.sent = self.tamper(stage, "up", up)
            out = server_step(self.server, self.sent)
        self.done.append(stage)
        self.replies = out if stage == STAGES[-1] else self.tamper(stage, "down", out)
        return self.replies

    def until(self, stage):
        """Step until the clients' next move is ``stage`` (``replies`` are what they will consume)."""
        while self.next_stage != stage:
            self.step()
        return self.replies

    def run(self):
        """Every remaining stage; the server's sum."""
        while len(self.done) < len(STAGES):
            self.step()
        return self.replies

    def expected(self, among):
        """The plaintext sum over ``among``."""
        return np.sum([self.inputs[c] for c in among], axis=0, dtype=np.uint32)

    # headers and neighbours -------------------------------------------------------------------

    def to(self, client) -> m.Header:
        """The header of a server message to ``client``."""
        return m.Header(self.instance.digest, m.SERVER, client)

    def of(self, client) -> m.Header:
        """The header of ``client``'s message to the server."""
        return m.Header(self.instance.digest, client, m.SERVER)

    def neighbours(self, client) -> frozenset[int]:
        return self.server.graph[client]

    def non_neighbour(self, client) -> int:
        """A roster member that is not a neighbour of ``client`` (needs a sparse graph)."""
        return next(c for c in self.instance.roster if c != client and c not in self.neighbours(client))

    # message bodies ----------------------------------------------------------------------------

    def sign_alive(self, signer, alive) -> bytes:
        """``signer``'s genuine signature on a survivor statement (as its honest client would sign)."""
        return crypto.sign(self.protocol.identity(signer), sc.alive_message(self.instance.digest, signer, tuple(alive)))


def body(message, kind) -> Reader:
    """A reader at the body of a SecAgg message (after the 40-byte header)."""
    reader = Reader(unframe(message, kind=kind))
    reader.raw(m.HEADER_BYTES)
    return reader


def header(message) -> m.Header:
    payload = bytes(unframe(message, kind=message[3]))
    return m.Header(payload[:32], int.from_bytes(payload[32:36], "little"), int.from_bytes(payload[36:40], "little"))


# readers and writers of each body ------------------------------------------------------------

def read_keys(message) -> list[m.KeyEntry]:
    reader = body(message, m.KEYS)
    return [m.read_entry(reader) for _ in range(reader.u32())]


def keys_message(head: m.Header, entries) -> bytes:
    writer = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(writer, entry)
    return m.encode(m.KEYS, head, writer)


def read_advertised(message) -> m.KeyEntry:
    return m.read_entry(body(message, m.ADVERTISE))


def advertise_message(head: m.Header, entry: m.KeyEntry) -> bytes:
    return m.encode(m.ADVERTISE, head, m.write_entry(Writer(), entry))


def read_blobs(message, kind) -> dict[int, bytes]:
    return m.read_blobs(body(message, kind), max_count=1 << 16, blob_size=m.SHARE_CIPHERTEXT)


def blobs_message(kind, head, blobs) -> bytes:
    return m.encode(kind, head, m.write_blobs(Writer(), blobs))


def read_ids(message, kind) -> tuple[int, ...]:
    return m.read_ids(body(message, kind), max_count=1 << 16)


def ids_message(kind, head, ids) -> bytes:
    return m.encode(kind, head, Writer().ids(sorted(ids)))


def read_statements(message) -> dict[int, tuple[tuple[int, ...], bytes]]:
    return m.read_statements(body(message, m.UNMASK_REQUEST), max_count=1 << 16)


def request_message(head, statements) -> bytes:
    return m.encode(m.UNMASK_REQUEST, head, m.write_statements(Writer(), statements))


def read_shares(message) -> dict[int, tuple[int, np.ndarray, bytes, bytes]]:
    """peer -> (kind, 9 elements, the other share's digest, the dealer's signature)."""
    return m.read_shares(body(message, m.UNMASK), max_count=1 << 16)


def shares_message(head, shares) -> bytes:
    return m.encode(m.UNMASK, head, m.write_shares(Writer(), shares))


def read_convictions(message) -> list[tuple[int, int, dict]]:
    """[(owner, kind, holder -> (elements, other digest, signature))] of a CONVICTION message."""
    reader = body(message, m.CONVICTION)
    return [m.read_conviction(reader, max_count=1 << 16) for _ in range(reader.u32())]


def conviction_message(head, convictions) -> bytes:
    """A CONVICTION message from [(owner, kind, holder -> (elements, other digest, signature))]."""
    writer = Writer().u32(len(convictions))
    for owner, kind, shares in convictions:
        m.write_conviction(writer, owner, kind, shares)
    return m.encode(m.CONVICTION, head, writer)


def read_pair_keys(message) -> dict[int, bytes]:
    """neighbour -> the pairwise mask key of a PAIR_KEYS message."""
    reader = body(message, m.PAIR_KEYS)
    return {reader.u32(): reader.raw(m.KEY_BYTES) for _ in range(reader.u32())}


def proof(shares_by_holder, owner) -> tuple[int, dict]:
    """(kind, holder -> signed share) of ``owner`` from UNMASK bodies (holder -> read_shares(...))."""
    kinds = {shares[owner][0] for shares in shares_by_holder.values() if owner in shares}
    assert len(kinds) == 1
    return kinds.pop(), {h: tuple(shares[owner][1:]) for h, shares in shares_by_holder.items() if owner in shares}


def read_masked(message, length, itemsize=4):
    reader = body(message, m.MASKED)
    peers = m.read_ids(reader, max_count=1 << 16)
    words = reader.words(length=length, itemsize=itemsize)
    signature = reader.raw(m.SIG_BYTES)
    reader.done()
    return peers, words, signature


def consistency_signature(message) -> bytes:
    return body(message, m.CONSISTENCY).raw(m.SIG_BYTES)
