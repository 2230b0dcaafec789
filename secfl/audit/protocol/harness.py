"""The SecAgg / SecAgg+ harness of the protocol attacks: bound instances run by ``secagg_round.run_instance``.

Threat model of the harness itself: it plays no honest party. Honest clients are real ``SecAggClient``
objects built as a deployed client would build them: each derives its parameters for the group
size n it was configured with (``Group.params``, never the roster's size), keeps ONE
``ContributionRecord`` for its whole life and names each input by an input key that depends on the
input (task, FL round), not on the instance the server invites it to. The honest server is a real
``SecAggServer``. Everything an attacker does goes through ``run_instance``'s ``tamper`` hook (it
rewrites, drops or records messages in flight) or is a message it writes itself with the public
codec; ``Halt`` stops the honest relay at a stage so the attacker can carry on by hand.

Configurations: ``secagg`` = SecAgg (complete graph) over 5 clients (k = 4, t = 3); ``secagg+`` =
SecAggPlus(neighbours=4) over 9 clients (a sparse Harary graph, k = 4, t = 3); vectors of 8 words.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from secfl.audit.protocol.base import Refusal
from secfl.exceptions import SecflError
from secfl.hazmat import crypto, prg, shamir, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import ABORTED, SecAggClient, input_key, pair_info, self_mask_info
from secfl.protocols.secagg_instance import SESSION_BYTES, Instance, roster_of
from secfl.protocols.secagg_record import ContributionRecord
from secfl.protocols.secagg_round import run_instance
from secfl.protocols.secagg_server import SecAggServer

GROUP = {"secagg": 5, "secagg+": 9}
D = 8


def secagg_protocol(name: str) -> SecAggPlus:
    return SecAgg() if name == "secagg" else SecAggPlus(neighbours=4, dropout_rate=0.0)


class Halt(Exception):  # noqa: N818 - a control-flow signal, not an error (and not a SecflError)
    """Raised by a tamper hook to stop the honest relay after a stage (the attacker continues by hand)."""


class SetupFailed(SecflError):
    """The attack could not be set up as intended (reported as not refused, never as a refusal)."""


class Excluded(SecflError):
    """The honest parties excluded a faulty client and released the exact sum of the others (not an abort)."""


class Group:
    """Registered clients with their long-term keys, lifelong contribution records and inputs.

    ``params`` is what each client derives itself for groups of ``n``: a roster of another size is
    refused by the client (the server cannot choose n).
    """

    def __init__(self, name: str, *, n: int | None = None) -> None:
        self.name, self.protocol, self.n = name, secagg_protocol(name), n or GROUP[name]
        self.params = self.protocol.params(self.n)
        self.t, self.k = self.params.threshold, self.params.neighbours
        self.task = os.urandom(16)  # names this experiment's inputs in the input keys
        self.records: dict[int, ContributionRecord] = {}

    def input(self, c: int) -> np.ndarray:
        """Client c's input for any FL round (experiment data: all crypto randomness is the OS CSPRNG)."""
        return np.random.default_rng(1000 + c).integers(0, 2**20, size=D, dtype=np.uint32)

    def total(self, members: Iterable[int]) -> np.ndarray:
        return np.sum([self.input(c) for c in members], axis=0, dtype=np.uint32)

    def instance(self, roster: Sequence[int] | None = None, *, session: bytes | None = None, round_: int = 1,
                 group: int = 0) -> Instance:
        return Instance(session or os.urandom(SESSION_BYTES), round_, group,
                        roster_of(range(self.n) if roster is None else roster))

    def client(self, c: int, instance: Instance, *, input_round: int = 1, values=None) -> SecAggClient:
        """Client c invited to ``instance``: its own params, its one record, the input key of its input."""
        return SecAggClient(c, instance=instance, params=self.params,
                            values=self.input(c) if values is None else values,
                            signing_key=self.protocol.identity(c), directory=self.protocol.directory,
                            record=self.records.setdefault(c, ContributionRecord()),
                            input_key=input_key(self.task, input_round, c))

    def server(self, instance: Instance) -> SecAggServer:
        return SecAggServer(instance=instance, params=self.protocol.params(instance.n),
                            directory=self.protocol.directory, length=D, dtype=np.uint32)


Tamper = Callable[[str, str, dict], dict]


class Round:
    """One bound instance with honest clients and the honest server, relayed by ``run_instance``.

    ``log[stage, direction]`` holds the messages as delivered (after ``tamper``).
    """

    def __init__(self, group: Group | str, instance: Instance | None = None, *, members: Iterable[int] | None = None,
                 input_round: int = 1, values: Mapping | None = None) -> None:
        self.group = group if isinstance(group, Group) else Group(group)
        self.instance = instance or self.group.instance()
        self.digest, self.t = self.instance.digest, self.group.t
        ids = self.instance.roster if members is None else members
        self.clients = {c: self.group.client(c, self.instance, input_round=input_round,
                                             values=(values or {}).get(c)) for c in ids}
        self.server = self.group.server(self.instance)
        self.log: dict[tuple[str, str], dict] = {}

    def run(self, tamper: Tamper | None = None, *, halt: tuple[str, str] | None = None,
            dropped_by: Callable[[str], set[int]] = lambda stage: set()) -> np.ndarray | None:
        """Run the instance; the server's sum, or None if ``halt`` (stage, direction) stopped it."""
        def relay(stage: str, direction: str, messages: dict) -> dict:
            messages = tamper(stage, direction, dict(messages)) if tamper else messages
            self.log[stage, direction] = dict(messages)
            if (stage, direction) == halt:
                raise Halt
            return messages

        try:
            total, _ = run_instance(self.clients, self.server, tamper=relay, dropped_by=dropped_by)
        except Halt:
            return None
        return total

    def to(self, c: int) -> m.Header:
        return m.Header(self.digest, m.SERVER, c)

    def of(self, c: int) -> m.Header:
        return m.Header(self.digest, c, m.SERVER)

    def neighbours(self, c: int) -> frozenset[int]:
        return self.server.graph[c]

    def expected(self) -> np.ndarray:
        return self.group.total(self.server.survivors)

    # the attacker's toolbox ----------------------------------------------------------------------

    def shares_of(self, answers: Mapping[int, bytes]) -> dict[int, dict[int, tuple[int, np.ndarray, bytes, bytes]]]:
        """holder -> peer -> (kind, 9 elements, the other share's digest, the dealer's signature) of UNMASK answers."""
        return {c: m.read_shares(body(a, m.UNMASK), max_count=self.group.n) for c, a in answers.items()}

    def signed(self, revealed: Mapping[int, Mapping], owner: int, kind: int) -> dict[int, tuple]:
        """holder -> (elements, other digest, dealer's signature): ``owner``'s signed shares revealed as ``kind``."""
        return {h: tuple(shares[owner][1:]) for h, shares in revealed.items()
                if owner in shares and shares[owner][0] == kind}

    def secret(self, revealed: Mapping[int, Mapping], u: int, kind: int) -> bytes:
        """The attacker's reconstruction of u's seed (SELF_MASK) or mask key (KEY_SHARE) with the real Shamir code."""
        holders = sorted(h for h, shares in revealed.items() if u in shares and shares[u][0] == kind)
        stacked = np.stack([revealed[h][u][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS) if holders \
            else np.zeros((0, 1, m.SHARE_WORDS), dtype=np.uint64)
        return shamir.decode_secret(shamir.combine([h + 1 for h in holders], stacked, threshold=self.t)[0])

    def pair_key(self, u: int, v: int, s_sk: bytes, owner: int) -> bytes:
        """The pairwise mask key of (u, v) from the mask secret key of ``owner`` (u or v)."""
        other = v if owner == u else u
        return crypto.agree(s_sk, self.server.keys[other].s_public, info=pair_info("secagg-mask", self.digest, u, v))

    def strip(self, upload: bytes, u: int, b_seed: bytes | None, pair_keys: Mapping[int, bytes]) -> np.ndarray:
        """u's masked upload minus the self mask and the pairwise masks the attacker could compute."""
        y = masked_words(upload).copy()
        if b_seed is not None:
            prg.add_mask(y, crypto.derive(b_seed, info=self_mask_info(self.digest, u)), sign=-1)
        for v, key in pair_keys.items():
            prg.add_mask(y, key, sign=-1 if u < v else 1)
        return y

    def leak(self, u: int, candidate: np.ndarray) -> str | None:
        if np.array_equal(candidate, self.group.input(u)):
            return f"client {u}'s unmasked input (all {candidate.size} words)"
        return None


def deals_badly(rnd: Round, cheat: int, how: str, then: Tamper | None = None) -> Tamper:
    """A tamper hook for a cheating dealer: once ``cheat``'s advertisement has left (with the commitment
    to its seed and its s_pk), it deals shares of another self-mask seed (``how="seed"``) or of another
    mask key (``how="key"``) than the ones it advertised, each share validly signed by it (it runs the
    honest client code from then on). ``then`` is applied to every stage after that."""
    def tamper(stage: str, direction: str, messages: dict) -> dict:
        if (stage, direction) == ("advertise_keys", "up"):
            client = rnd.clients[cheat]
            if how == "seed":
                client.b_seed = os.urandom(32)
            else:
                client.s_sk = os.urandom(32)
        return then(stage, direction, messages) if then else messages
    return tamper


def conviction_message(header: m.Header, convictions: Iterable[tuple[int, int, Mapping[int, tuple]]]) -> bytes:
    """A CONVICTION: per dealer (dealer, kind, holder -> (elements, other digest, signature))."""
    convictions = list(convictions)
    out = Writer().u32(len(convictions))
    for owner, kind, shares in convictions:
        m.write_conviction(out, owner, kind, shares)
    return m.encode(m.CONVICTION, header, out)


def read_convictions(message: bytes) -> list[tuple[int, int, dict[int, tuple]]]:
    reader = body(message, m.CONVICTION)
    return [m.read_conviction(reader, max_count=1 << 20) for _ in range(reader.u32())]


def read_pair_keys(message: bytes) -> dict[int, bytes]:
    """neighbour -> pairwise mask key of a PAIR_KEYS answer."""
    reader = body(message, m.PAIR_KEYS)
    return {reader.u32(): reader.raw(m.KEY_BYTES) for _ in range(reader.u32())}


def body(message: bytes, kind: int) -> Reader:
    """The body of a SecAgg message (after the 40-byte header), for the attacker to parse."""
    reader = Reader(wire.unframe(message, kind=kind))
    reader.raw(m.HEADER_BYTES)
    return reader


def read_ids_of(upload: bytes) -> tuple[int, ...]:
    """The peers a MASKED upload says its sender masked with."""
    return body(upload, m.MASKED).ids(max_count=1 << 20)


def masked_words(upload: bytes) -> np.ndarray:
    reader = body(upload, m.MASKED)
    reader.ids(max_count=1 << 20)
    return reader.words(length=D, itemsize=4)


def read_keys(message: bytes) -> list[m.KeyEntry]:
    reader = body(message, m.KEYS)
    return [m.read_entry(reader) for _ in range(reader.u32())]


def keys_message(header: m.Header, entries: Sequence[m.KeyEntry]) -> bytes:
    out = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(out, entry)
    return m.encode(m.KEYS, header, out)


def blobs_of(message: bytes, kind: int = m.CIPHERTEXTS) -> dict[int, bytes]:
    return m.read_blobs(body(message, kind), max_count=1 << 20, blob_size=m.SHARE_CIPHERTEXT)


def ids_message(kind: int, header: m.Header, ids: Iterable[int]) -> bytes:
    return m.encode(kind, header, Writer().ids(sorted(ids)))


def statements_message(header: m.Header, statements: Mapping[int, tuple[Sequence[int], bytes]]) -> bytes:
    return m.encode(m.UNMASK_REQUEST, header, m.write_statements(
        Writer(), {s: (tuple(sorted(alive)), sig) for s, (alive, sig) in statements.items()}))


def signature_of(consistency: bytes) -> bytes:
    return body(consistency, m.CONSISTENCY).raw(m.SIG_BYTES)


def refused_by(clients: Iterable[SecAggClient], run: Callable[[], object]) -> object:
    """``run()``; a secfl error it raises counts as a refusal only if one of ``clients`` refused (is ABORTED)."""
    clients = list(clients)
    try:
        return run()
    except SecflError as error:
        if any(cl.stage == ABORTED for cl in clients):
            raise Refusal(error) from error
        raise


def excluded(rnd: Round, run: Callable[[], np.ndarray | None], cheat: int, what: str, *, counted: bool = False) -> str:
    """A faulty client's attempt: the round must complete, without ``cheat``, with the exact sum of the others.

    ``counted``: the cheat's masked input was already in (a fault at consistency_check or unmask), so
    its input stays in the sum and the server must have flagged it (``server.rejected``) instead.

    Raises a ``Refusal`` (``Excluded``) when it did; returns what went wrong otherwise.
    """
    try:
        total = run()
    except SecflError as error:
        return f"the round aborted ({type(error).__name__}): {what} denied the group its sum"
    if total is None:
        raise SetupFailed("the round was halted")
    survivors = set(rnd.server.survivors)
    honest = set(rnd.clients) - {cheat}
    if not np.array_equal(total, rnd.expected()):
        return f"a wrong sum after {what}"
    if counted and cheat not in rnd.server.rejected:
        return f"{what} went unnoticed (client {cheat} not flagged)"
    if not counted and cheat in survivors:
        return f"{what} was accepted (client {cheat} still counted)"
    if not honest <= survivors:
        return f"honest clients {sorted(honest - survivors)} were dropped along with {what}"
    raise Refusal(Excluded(f"client {cheat} excluded; exact sum of the other {len(survivors)}"))
