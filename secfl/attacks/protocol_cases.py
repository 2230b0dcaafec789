"""The attack attempts of ``secfl.attacks.protocol``: one function per attack, honest parties run by secfl.

SecAgg / SecAgg+ attempts drive real ``SecAggClient`` objects stage by stage through
``SecAggRound`` (an honest ``SecAggServer`` relays the early stages, then the attacker writes the
server's messages itself). HE attempts drive ``HeClient``, ``HeAggregator`` and ``KeyHolder``
through ``HeRound``. Each function returns an ``Attempt`` (see ``secfl.attacks.protocol.attempt``):
the attack raises the honest party's error, or returns what it obtained.

Configurations: ``secagg`` = SecAgg (complete graph) over 5 clients (k = 4, t = 3); ``secagg+`` =
SecAggPlus(neighbours=4) over 9 clients (a sparse Harary graph, k = 4, t = 3); ``he`` = HeSum BFV
with 20-bit words. Vectors have 8 (SecAgg) or 16 (HE) words.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from secfl.attacks.protocol import Attempt, Refusal, attempt, decisive, refusals
from secfl.exceptions import InsufficientParticipantsError, ProtocolError, SecflError
from secfl.hazmat import crypto, prg, ring, shamir, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import he_messages as hm
from secfl.protocols import secagg_messages as m
from secfl.protocols.he import HeSum
from secfl.protocols.he_params import new_context
from secfl.protocols.he_roles import HeAggregator, HeClient
from secfl.protocols.secagg_client import SecAggClient, commit, consistency_message, pair_info, self_mask_info
from secfl.protocols.secagg_params import graph_seed
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import DropoutSchedule, Update

HEADER = m.SESSION_BYTES + 8 + 4 + 4 + 4  # session, round, group, sender, recipient
GROUP = {"secagg": 5, "secagg+": 9}


def _protocol(name: str) -> SecAggPlus:
    return SecAgg() if name == "secagg" else SecAggPlus(neighbours=4, dropout_rate=0.0)


def _body(message: bytes, kind: int) -> Reader:
    reader = Reader(wire.unframe(message, kind=kind))
    reader.raw(HEADER)
    return reader


def _decisively(step: Callable, *args):
    """``step(*args)`` as the decisive honest step (see ``decisive``)."""
    with decisive():
        return step(*args)


def _flip(data: bytes, position: int) -> bytes:
    mutated = bytearray(data)
    mutated[position] ^= 0x01
    return bytes(mutated)


# SecAgg harness ---------------------------------------------------------------------------------

class SecAggRound:
    """One group's round with honest clients, stepped by hand so an attacker can act between stages."""

    def __init__(self, name: str, *, n: int | None = None, d: int = 8, protocol: SecAggPlus | None = None,
                 session: bytes | None = None, round_: int = 1, group: int = 0, advertise: bool = True) -> None:
        self.protocol = protocol or _protocol(name)
        self.n = n or GROUP[name]
        self.header = m.Header(session or os.urandom(m.SESSION_BYTES), round_, group, m.SERVER, m.SERVER)
        self.params = self.protocol.params(self.n)
        self.t = self.params.threshold
        data = np.random.default_rng(self.n)  # experiment data only; all crypto randomness is the OS CSPRNG
        self.inputs = {c: data.integers(0, 2**20, size=d, dtype=np.uint32) for c in range(self.n)}
        self.clients = {c: SecAggClient(c, header=self.header, params=self.params, values=self.inputs[c],
                                        signing_key=self.protocol.identity(c), directory=self.protocol.directory)
                        for c in range(self.n)}
        self.server = SecAggServer(header=self.header, members=list(self.clients), params=self.params,
                                   directory=self.protocol.directory, length=d, dtype=np.uint32)
        if advertise:  # stage advertise_keys, relayed honestly: ``keys[c]`` is the KEYS message for c
            self.keys = self.server.receive_advertise({c: cl.advertise_keys() for c, cl in self.clients.items()})
            self.graph = self.server.graph

    def to(self, client: int) -> m.Header:
        return m.Header(self.header.session, self.header.round, self.header.group, m.SERVER, client)

    def shares(self) -> SecAggRound:
        """Stage share_keys, relayed honestly: ``ciphertexts[c]`` is the CIPHERTEXTS message for c."""
        shares = {c: cl.share_keys(self.keys[c]) for c, cl in self.clients.items()}
        self.ciphertexts = self.server.receive_shares(shares)
        return self

    def masked(self) -> SecAggRound:
        """Stage masked_input: every client uploads; ``uploads[c]`` is its MASKED message."""
        self.uploads = {c: cl.masked_input(self.ciphertexts[c]) for c, cl in self.clients.items()}
        self.survivor_messages = self.server.receive_masked(self.uploads)
        return self

    def sign(self, lists: Mapping[int, Sequence[int]]) -> dict[int, bytes]:
        """Show each client its survivor list (SURVIVORS); return the signatures they send back."""
        out = {}
        for c, listed in lists.items():
            reply = self.clients[c].consistency_check(m.encode(m.SURVIVORS, self.to(c), Writer().ids(sorted(listed))))
            out[c] = _body(reply, m.CONSISTENCY).raw(m.SIG_BYTES)
        return out

    def request(self, c: int, survivors, dropped, signatures: Mapping[int, bytes]) -> bytes:
        body = Writer().ids(sorted(survivors)).ids(sorted(dropped)).u32(len(signatures))
        for signer in sorted(signatures):
            body.u32(signer).raw(signatures[signer])
        return m.encode(m.UNMASK_REQUEST, self.to(c), body)

    def unmask(self, c: int, survivors, signatures, dropped=None) -> dict[int, tuple[int, np.ndarray]]:
        """The shares client c reveals when asked (``dropped`` defaults to what its own view implies)."""
        if dropped is None:
            dropped = self.clients[c].shared_with - set(survivors)
        reader = _body(self.clients[c].unmask(self.request(c, survivors, dropped, signatures)), m.UNMASK)
        shares = m.read_shares(reader, max_count=self.n)
        reader.done()
        return shares

    def secret(self, revealed: Mapping[int, Mapping], u: int, kind: int) -> bytes:
        """The attacker's reconstruction of u's self-mask seed or mask key from the revealed shares."""
        holders = sorted(h for h, shares in revealed.items() if u in shares and shares[u][0] == kind)[: self.t]
        if len(holders) < self.t:
            raise InsufficientParticipantsError(f"{len(holders)} shares of client {u}, threshold {self.t}")
        stacked = np.stack([revealed[h][u][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        return shamir.decode_secret(shamir.combine([h + 1 for h in holders], stacked, threshold=self.t)[0])

    def pair_key(self, u: int, v: int, s_sk: bytes, owner: int) -> bytes:
        """The pairwise mask key of (u, v) from the mask secret key of ``owner`` (u or v)."""
        other = v if owner == u else u
        return crypto.agree(s_sk, self.server.keys[other].s_public, info=pair_info("secagg-mask", self.header, u, v))

    def strip(self, u: int, b_seed: bytes | None, pair_keys: Mapping[int, bytes]) -> np.ndarray:
        """u's masked input minus the self mask and pairwise masks the attacker can compute."""
        y = _body(self.uploads[u], m.MASKED).words(length=self.inputs[u].size, itemsize=4).copy()
        if b_seed is not None:
            prg.add_mask(y, crypto.derive(b_seed, info=self_mask_info(self.header, u)), sign=-1)
        for v, key in pair_keys.items():
            prg.add_mask(y, key, sign=-1 if u < v else 1)
        return y

    def leak(self, u: int, candidate: np.ndarray) -> str | None:
        """What the attacker learned if ``candidate`` is u's input, else None."""
        if np.array_equal(candidate, self.inputs[u]):
            return f"client {u}'s unmasked input (all {candidate.size} words)"
        return None

    def ring_order(self) -> list[int]:
        """The clients in the relabelled Harary order (the graph is public: the seed is the advertised keys)."""
        seed = graph_seed(self.header.session, self.header.round, self.header.group,
                          [(e.client, e.c_public, e.s_public) for e in self.server.keys.values()])
        return sorted(self.clients, key=lambda u: hashlib.sha256(seed + int(u).to_bytes(4, "little")).digest())


def _everyone_signs(rnd: SecAggRound) -> tuple[list[int], dict[int, bytes]]:
    everyone = sorted(rnd.clients)
    return everyone, rnd.sign({c: everyone for c in everyone})


# SecAgg: asking for both shares of one client ----------------------------------------------------

def both_shares_one_request(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = _everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        with decisive():
            rnd.unmask(0, everyone, signatures, dropped=[victim])
        return f"a self-mask share and a key share of client {victim} from client 0"

    return attempt("both-shares-one-request", p, "The server lists a client as surviving AND dropped in one "
                   "unmask request, asking for both its self-mask share and its key share.", go)


def both_shares_two_requests(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = _everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        rnd.unmask(0, everyone, signatures)  # honest: the self-mask shares of every survivor
        with decisive():
            rnd.unmask(0, [c for c in everyone if c != victim], signatures, dropped=[victim])
        return f"both shares of client {victim} from client 0"

    return attempt("both-shares-two-requests", p, "After an honest unmask request, the server sends a second one "
                   "declaring a client dropped, to get its key share too.", go)


def late_upload(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()  # the victim's masked input did arrive
        victim = 1
        alive = [c for c in rnd.clients if c != victim]
        signatures = rnd.sign({c: alive for c in alive})  # ... but the server says it was too late
        holders = [c for c in alive if victim in rnd.clients[c].shared_with]
        revealed = {c: rnd.unmask(c, alive, signatures) for c in holders[: rnd.t]}
        s_sk = rnd.secret(revealed, victim, m.KEY_SHARE)
        pair = {v: rnd.pair_key(victim, v, s_sk, owner=victim) for v in rnd.clients[victim].shared_with}
        leak = rnd.leak(victim, rnd.strip(victim, None, pair))  # x + PRG(b): still masked
        if leak:
            return leak
        with decisive():  # now ask another holder for the victim's self-mask share
            rnd.unmask(holders[rnd.t], sorted(rnd.clients), signatures)
        return f"client {victim}'s self-mask shares after its key was reconstructed"

    return attempt("late-upload-both-masks", p, "The server receives a client's masked input, declares it dropped "
                   "to reconstruct its mask key, then asks the other holders for its self-mask shares.", go)


# SecAgg: survivor lists -------------------------------------------------------------------------

def list_changed_after_signing(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = _everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        with decisive():
            rnd.unmask(0, [c for c in everyone if c != victim], signatures, dropped=[victim])
        return f"client {victim}'s key share from client 0"

    return attempt("survivors-changed-after-signing", p, "Everyone signs the full survivor list; the unmask request "
                   "then drops one client from it, to get that client's key share.", go)


def one_client_misled(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone = sorted(rnd.clients)
        victim = max(rnd.clients[0].shared_with)
        mine = [c for c in everyone if c != victim]
        signatures = rnd.sign({c: (mine if c == 0 else everyone) for c in everyone})
        with decisive():
            rnd.unmask(0, mine, {c: s for c, s in signatures.items() if c in mine})
        return f"client {victim}'s key share from client 0"

    return attempt("inconsistent-survivors-one-client", p, "The server shows client 0 a survivor list without a "
                   "neighbour and everyone else the full list, then asks client 0 to unmask with the signatures.", go)


def split_view(p: str, n: int) -> Attempt:
    def go():
        rnd = SecAggRound(p, n=n).shares().masked()
        target, order = 0, rnd.ring_order()
        parts = max(2, rnd.n // rnd.t)
        quorums = [order[i::parts] for i in range(parts)]  # disjoint signer sets, spread over the ring
        lists = {i: sorted(set(q) | {target}) for i, q in enumerate(quorums)}
        where = {c: i for i, q in enumerate(quorums) for c in q}
        refusals_seen, signatures = [], {}
        for c, i in where.items():
            try:
                signatures.update(rnd.sign({c: lists[i]}))
            except SecflError as error:
                refusals_seen.append(error)
        revealed = {}
        for c, i in where.items():
            if c not in signatures:  # it refused its list: ask it nothing more
                continue
            quorum = {s: signatures[s] for s in quorums[i] if s in signatures}
            try:
                revealed[c] = rnd.unmask(c, lists[i], quorum)
            except SecflError as error:
                refusals_seen.append(error)
        try:
            b_seed = rnd.secret(revealed, target, m.SELF_MASK)
            pair = {v: rnd.pair_key(target, v, rnd.secret(revealed, v, m.KEY_SHARE), owner=v)
                    for v in rnd.clients[target].shared_with}
        except SecflError:
            if refusals_seen:  # the attack failed because honest clients refused
                raise Refusal(refusals_seen[0]) from None
            raise
        return rnd.leak(target, rnd.strip(target, b_seed, pair)) or "a wrong guess of client 0's input"

    return attempt(f"split-view-quorums-n{n}", p, f"Group of {n}: the server splits the clients into disjoint "
                   "quorums of >= t signers, shows each quorum its own survivor list (client 0 alive in all, the "
                   "other quorums dropped), and combines the self-mask shares of client 0 with the key shares of "
                   "all its neighbours.", go)


def too_few_signatures(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = _everyone_signs(rnd)
        with decisive():
            rnd.unmask(0, everyone, dict(sorted(signatures.items())[: rnd.t - 1]))
        return "shares from client 0 with fewer than t consistency signatures"

    return attempt("too-few-signatures", p, "The unmask request carries t - 1 consistency signatures.", go)


def forged_signatures(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone = sorted(rnd.clients)
        victim = max(rnd.clients[0].shared_with)
        mine = [c for c in everyone if c != victim]
        signatures = rnd.sign({0: mine})  # only client 0 is shown this list; the server forges the others
        forger, _ = crypto.ed25519_keypair()
        statement = consistency_message(rnd.header, mine)
        signatures.update({c: crypto.sign(forger, statement) for c in mine if c != 0})
        with decisive():
            rnd.unmask(0, mine, signatures)
        return f"client {victim}'s key share from client 0"

    return attempt("forged-consistency-signatures", p, "The server signs a survivor list on the other clients' "
                   "behalf with a key of its own.", go)


# SecAgg: replays --------------------------------------------------------------------------------

def replay_earlier_round(p: str) -> Attempt:
    def go():
        old = SecAggRound(p)
        new = SecAggRound(p, protocol=old.protocol, session=old.header.session, round_=2)
        with decisive():
            new.clients[0].share_keys(old.keys[0])
        return "client 0 accepted round 1's keys in round 2"

    return attempt("replay-earlier-round", p, "The server replays round 1's KEYS message in round 2 of the "
                   "session.", go)


def replay_other_session(p: str) -> Attempt:
    def go():
        old = SecAggRound(p)
        other = SecAggRound(p, protocol=old.protocol)
        with decisive():
            other.clients[0].share_keys(old.keys[0])
        return "client 0 accepted another session's keys"

    return attempt("replay-other-session", p, "The server replays a KEYS message from another session.", go)


def replay_other_group(p: str) -> Attempt:
    def go():
        first = SecAggRound(p)
        second = SecAggRound(p, protocol=first.protocol, session=first.header.session, group=1)
        with decisive():
            second.clients[0].share_keys(first.keys[0])
        return "client 0 of group 1 accepted group 0's keys"

    return attempt("replay-other-group", p, "The server sends group 0's KEYS message to a client of group 1 "
                   "in the same round.", go)


def misaddressed(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        with decisive():
            rnd.clients[1].share_keys(rnd.keys[0])
        return "client 1 accepted a message addressed to client 0"

    return attempt("misaddressed-message", p, "The server sends client 1 the KEYS message addressed to client 0.", go)


def replay_earlier_stage(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        with decisive():
            rnd.clients[0].masked_input(rnd.keys[0])
        return "client 0 accepted a KEYS message at the masked-input stage"

    return attempt("replay-earlier-stage", p, "At the masked-input stage the server replays the client's KEYS "
                   "message of the previous stage.", go)


def replay_same_request(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = _everyone_signs(rnd)
        request = rnd.request(0, everyone, [], signatures)
        rnd.clients[0].unmask(request)
        with decisive():
            rnd.clients[0].unmask(request)
        return "client 0 answered the same unmask request twice"

    return attempt("replay-unmask-request", p, "The server replays an unmask request the client already answered.", go)


def out_of_order(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)  # keys advertised; share_keys not run
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), Writer().u32(0)))
        return "client 0 skipped share_keys"

    return attempt("skipped-stage", p, "The server skips share_keys and sends a masked-input request directly.", go)


# SecAgg: forged and tampered messages ------------------------------------------------------------

def _blobs(message: bytes, n: int) -> dict[int, bytes]:
    reader = _body(message, m.CIPHERTEXTS)
    return m.read_blobs(reader, max_count=n, blob_size=m.SHARE_CIPHERTEXT)


def tampered_share(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        blobs = _blobs(rnd.ciphertexts[0], rnd.n)
        sender = min(blobs)
        blobs[sender] = _flip(blobs[sender], 20)
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
        return "client 0 accepted a tampered share"

    return attempt("tampered-share-ciphertext", p, "The server flips one bit of an encrypted share.", go)


def share_for_another(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        sender = min(rnd.graph[0])
        other = min(v for v in rnd.graph[sender] if v != 0)
        blobs = _blobs(rnd.ciphertexts[0], rnd.n)
        blobs[sender] = _blobs(rnd.ciphertexts[other], rnd.n)[sender]  # encrypted for `other`
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
        return "client 0 accepted a share encrypted for another client"

    return attempt("share-for-another-client", p, "The server delivers to client 0 a share that a neighbour "
                   "encrypted for another client.", go)


def _entries(rnd: SecAggRound) -> list[m.KeyEntry]:
    reader = _body(rnd.keys[0], m.KEYS)
    return [m.read_entry(reader) for _ in range(reader.u32())]


def _keys_message(rnd: SecAggRound, entries: Sequence[m.KeyEntry]) -> bytes:
    body = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(body, entry)
    return m.encode(m.KEYS, rnd.to(0), body)


def substituted_key(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        entries = _entries(rnd)
        _, public = crypto.x25519_keypair()
        victim = entries[1]
        entries[1] = m.KeyEntry(victim.client, public, public, victim.commitment, victim.signature)
        with decisive():
            rnd.clients[0].share_keys(_keys_message(rnd, entries))
        return f"client 0 encrypted its shares for client {victim.client} under the server's key"

    return attempt("substituted-round-key", p, "The server replaces a client's advertised round keys with its own "
                   "(to decrypt the shares sent to it).", go)


def sybil(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        _, public = crypto.x25519_keypair()
        fake = m.KeyEntry(10_000, public, public, bytes(32), bytes(m.SIG_BYTES))
        with decisive():
            rnd.clients[0].share_keys(_keys_message(rnd, [*_entries(rnd)[:-1], fake]))
        return "client 0 accepted a client the directory does not know"

    return attempt("sybil-client", p, "The server invents a client (an id outside the key directory).", go)


def corrupted_share_from_client(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        requests = rnd.server.receive_consistency(
            {c: rnd.clients[c].consistency_check(rnd.survivor_messages[c]) for c in rnd.clients})
        answers = {c: rnd.clients[c].unmask(requests[c]) for c in rnd.clients}
        cheat = 1
        reader = _body(answers[cheat], m.UNMASK)
        shares = m.read_shares(reader, max_count=rnd.n)
        victim = min(shares)
        kind, elements = shares[victim]
        shares[victim] = (kind, (elements + 1) % shamir.PRIME)
        answers[cheat] = m.encode(m.UNMASK, m.Header(rnd.header.session, 1, 0, cheat, m.SERVER),
                                  m.write_shares(Writer(), shares))
        with decisive():
            total = rnd.server.receive_unmask(answers)
        honest = np.sum([rnd.inputs[c] for c in rnd.clients], axis=0, dtype=np.uint32)
        return "a wrong sum, accepted by the server" if not np.array_equal(total, honest) else (
            "nothing, but the corrupted share was silently ignored")

    return attempt("malicious-client-bad-share", p, "A malicious client answers the unmask request with a corrupted "
                   "share, to bias the sum undetected.", go)


# SecAgg: a client that refused must stay silent -----------------------------------------------------

def continue_after_refusal(p: str, stage: str) -> Attempt:
    """The server sends a message the client refuses, then carries on with the next stage as if nothing happened."""
    def go():
        rnd = SecAggRound(p)
        client, everyone = rnd.clients[0], sorted(rnd.clients)
        if stage == "share_keys":
            _refuse(client.share_keys, rnd.keys[1])  # the KEYS message addressed to client 1
            with decisive():
                client.masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), Writer().u32(0)))
            return "client 0 processed the next stage after refusing share_keys"
        rnd.shares()
        if stage == "masked_input":
            blobs = _blobs(rnd.ciphertexts[0], rnd.n)
            blobs[min(blobs)] = _flip(blobs[min(blobs)], 20)
            _refuse(client.masked_input, m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
            with decisive():
                rnd.sign({0: everyone})
            return "client 0's consistency signature on a survivor list after it refused the round (it never uploaded)"
        for c in everyone[1:]:
            rnd.clients[c].masked_input(rnd.ciphertexts[c])
        rnd.uploads = {0: client.masked_input(rnd.ciphertexts[0])}
        signatures = rnd.sign({c: everyone for c in everyone[1:]})
        _refuse(client.consistency_check, m.encode(m.SURVIVORS, rnd.to(0), Writer().ids(everyone[1:])))  # not itself
        with decisive():
            rnd.unmask(0, everyone, signatures)
        return "client 0 revealed shares after refusing the survivor list"

    return attempt(f"continue-after-refused-{stage.replace('_', '-')}", p, f"The server sends a message the client "
                   f"refuses at {stage}, then sends the next stage's message anyway (the client must stay silent for "
                   "the rest of the round).", go)


def _refuse(step: Callable, message: bytes) -> None:
    """The set-up step of ``continue_after_refusal``: the client must refuse it (else the set-up failed)."""
    try:
        step(message)
    except ProtocolError:
        return
    raise _SetupFailed("the client accepted the message it should refuse")


class _SetupFailed(SecflError):
    """The attack could not be set up as intended (reported as not refused, never as a refusal)."""


# SecAgg: malformed messages ------------------------------------------------------------------------

def _garbage(message: bytes, kind: int, cap: int) -> list[tuple[str, object]]:
    """Malformed versions of an honest message of ``kind`` (each must be MalformedMessageError)."""
    payload = bytes(wire.unframe(message, kind=kind))
    return [
        ("empty", b""),
        ("truncated header", message[:5]),
        ("truncated body", message[:-1]),
        ("trailing byte", message + b"\x00"),
        ("wrong kind", wire.frame(kind + 1, payload)),
        ("bad magic", b"XX" + message[2:]),
        ("bad version", message[:2] + b"\x09" + message[3:]),
        ("huge declared length", message[:4] + (0xFFFFFFFF).to_bytes(4, "little") + message[8:]),
        ("huge item count", wire.frame(kind, payload[:HEADER] + (0xFFFFFFFF).to_bytes(4, "little") + payload[HEADER:])),
        ("oversized", wire.frame(kind, payload + bytes(cap))),
        ("header only", wire.frame(kind, payload[:HEADER])),
        ("None", None),
        ("str", message.decode("latin-1")),
        ("int", 42),
        ("list", [message]),
    ]


def _malformed(p: str, stage: str, kind: int, prepare: Callable[[SecAggRound], bytes]) -> Attempt:
    step = getattr(SecAggClient, stage)

    def go():
        rnd = SecAggRound(p)
        honest = prepare(rnd)
        calls = [(label, lambda bad=bad: _decisively(step, copy.deepcopy(rnd.clients[0]), bad))
                 for label, bad in _garbage(honest, kind, rnd.clients[0].cap)]
        return refusals(calls)

    return attempt(f"malformed-{stage.replace('_', '-')}", p, f"Truncated, padded, mistyped, oversized and huge-count "
                   f"versions of the server's message at stage {stage} (15 variants, one fresh client each).", go)


def _at_unmask(rnd: SecAggRound) -> bytes:
    rnd.shares().masked()
    everyone, signatures = _everyone_signs(rnd)
    return rnd.request(0, everyone, [], signatures)


def _at_consistency(rnd: SecAggRound) -> bytes:
    return rnd.shares().masked().survivor_messages[0]


def _at_masked(rnd: SecAggRound) -> bytes:
    return rnd.shares().ciphertexts[0]


def malformed_keys(p: str) -> Attempt:
    return _malformed(p, "share_keys", m.KEYS, lambda rnd: rnd.keys[0])


def malformed_ciphertexts(p: str) -> Attempt:
    return _malformed(p, "masked_input", m.CIPHERTEXTS, _at_masked)


def malformed_survivors(p: str) -> Attempt:
    return _malformed(p, "consistency_check", m.SURVIVORS, _at_consistency)


def malformed_unmask_request(p: str) -> Attempt:
    return _malformed(p, "unmask", m.UNMASK_REQUEST, _at_unmask)


def malformed_to_server(p: str) -> Attempt:
    """A malicious client sends garbage at each stage: the server must drop it, never crash or mis-sum."""
    kinds = {"advertise": m.ADVERTISE, "shares": m.SHARES, "masked": m.MASKED, "consistency": m.CONSISTENCY,
             "unmask": m.UNMASK}

    def one(stage: str):
        rnd, cheat = SecAggRound(p, advertise=False), 2
        sent = {c: cl.advertise_keys() for c, cl in rnd.clients.items()}
        server = SecAggServer(header=rnd.header, members=list(rnd.clients), params=rnd.params,
                              directory=rnd.protocol.directory, length=rnd.inputs[0].size, dtype=np.uint32)
        steps = [("advertise", None, server.receive_advertise),
                 ("shares", SecAggClient.share_keys, server.receive_shares),
                 ("masked", SecAggClient.masked_input, server.receive_masked),
                 ("consistency", SecAggClient.consistency_check, server.receive_consistency),
                 ("unmask", SecAggClient.unmask, server.receive_unmask)]
        replies, bad = None, None
        for name, client_step, server_step in steps:
            if client_step is not None:
                sent = {c: client_step(rnd.clients[c], r) for c, r in replies.items()}
            if name == stage:
                bad = sent[cheat] = sent[cheat][:-3]
            replies = server_step(sent)
        if cheat not in server.rejected:
            return f"the server accepted client {cheat}'s malformed {stage} message"
        expected = np.sum([rnd.inputs[c] for c in server.survivors], axis=0, dtype=np.uint32)
        if not np.array_equal(replies, expected):
            return f"a wrong sum after client {cheat}'s malformed {stage} message"
        # the server dropped the client; name the error its decoder raises on those bytes
        with decisive():
            m.open_message(bad, kind=kinds[stage], expect=m.Header(rnd.header.session, 1, 0, cheat, m.SERVER),
                           max_bytes=server.cap)
        return f"bytes the server's decoder accepted at {stage}"

    def go():
        return refusals([(stage, lambda stage=stage: one(stage)) for stage in kinds])

    return attempt("malformed-to-server", p, "A malicious client sends a truncated message at each stage; the "
                   "server must treat it as dropped and still output the correct sum of the others.", go)


# SecAgg: too few honest clients ------------------------------------------------------------------

def too_few_keys(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        entries = [e for e in _entries(rnd) if e.client in (0, min(rnd.graph[0]))]
        with decisive():
            rnd.clients[0].share_keys(_keys_message(rnd, entries))
        return "client 0 shared its secrets in a group of 2"

    return attempt("group-of-two-keys", p, "The server tells client 0 the group is itself and one other client "
                   "(so a 'sum' would reveal the other's input).", go)


def too_few_ciphertexts(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        blobs = dict(sorted(_blobs(rnd.ciphertexts[0], rnd.n).items())[: rnd.t - 1])
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
        return "client 0 masked its input with fewer than t neighbours"

    return attempt("too-few-share-senders", p, "The server forwards client 0 the shares of only t - 1 neighbours.", go)


def too_few_survivors(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        with decisive():
            rnd.sign({0: sorted(rnd.graph[0])[: rnd.t - 2] + [0]})
        return "client 0 signed a survivor list shorter than t"

    return attempt("too-few-survivors", p, "The server claims only t - 1 clients survived (a sum over fewer "
                   "than t).", go)


def unmask_below_threshold(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        requests = rnd.server.receive_consistency(
            {c: rnd.clients[c].consistency_check(rnd.survivor_messages[c]) for c in rnd.clients})
        victim = 0
        holders = sorted(c for c in rnd.clients if victim in rnd.clients[c].shared_with)[: rnd.t - 1]
        answers = {c: rnd.clients[c].unmask(requests[c]) for c in holders}
        revealed = {c: m.read_shares(_body(a, m.UNMASK), max_count=rnd.n) for c, a in answers.items()}
        points = [h + 1 for h in holders]
        stacked = np.stack([revealed[h][victim][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        try:  # interpolate as if t - 1 shares sufficed
            guess = shamir.decode_secret(shamir.combine(points, stacked, threshold=len(holders))[0])
        except SecflError:
            guess = b""
        if guess and commit(guess) == rnd.server.keys[victim].commitment:
            return f"client {victim}'s self-mask seed from t - 1 shares"
        with decisive():  # the honest server code on the same t - 1 answers
            rnd.server.receive_unmask(answers)
        return "a sum unmasked from t - 1 answers"

    return attempt("unmask-below-threshold", p, "Only t - 1 clients answer the unmasking; the server tries to "
                   "reconstruct a self-mask seed from t - 1 shares.", go)


def group_below_minimum(p: str) -> Attempt:
    def go():
        ups = [Update(c, np.arange(8, dtype=np.uint32) + c) for c in range(2)]
        with decisive():
            result = _protocol(p).run(ups, groups=[[0, 1]])
        return f"a 'sum' of 2 inputs, i.e. each one given the other: {result.sums[0][:2]}..."

    return attempt("group-below-minimum", p, "The server forms a group of 2 clients (each learns the other's "
                   "input from the sum).", go)


def isolate_in_sparse_graph(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        target, cut = 0, rnd.graph[0]
        rnd.uploads = {c: cl.masked_input(rnd.ciphertexts[c]) for c, cl in rnd.clients.items()}
        # the server ignores the masked inputs of the target's neighbours: they "dropped"
        requests = rnd.server.receive_consistency({c: rnd.clients[c].consistency_check(msg) for c, msg in
                                                   rnd.server.receive_masked({c: u for c, u in rnd.uploads.items()
                                                                              if c not in cut}).items()})
        answers = {c: rnd.clients[c].unmask(r) for c, r in requests.items()}
        revealed = {c: m.read_shares(_body(a, m.UNMASK), max_count=rnd.n) for c, a in answers.items()}
        pair = {}
        for v in rnd.clients[target].shared_with:  # the neighbours' mask keys it can reconstruct
            try:
                pair[v] = rnd.pair_key(target, v, rnd.secret(revealed, v, m.KEY_SHARE), owner=v)
            except InsufficientParticipantsError:
                continue
        leak = rnd.leak(target, rnd.strip(target, None, pair))  # at best x + PRG(b): b's holders all "dropped"
        if leak:
            return leak
        with decisive():
            rnd.server.receive_unmask(answers)
        return "the honest server unmasked the isolated client"

    return attempt("isolate-in-sparse-graph", p, "The server drops every neighbour of client 0 in the sparse graph, "
                   "reconstructs their mask keys, and tries to unmask client 0 alone.", go)


# HE -------------------------------------------------------------------------------------------------

class HeRound:
    """The three HE roles of one round, driven by hand (d = 16 words of 20 bits)."""

    def __init__(self, he: HeSum | None = None, *, d: int = 16, groups: int = 2) -> None:
        self.he = he or HeSum(bits=20)
        self.d, self.round_id = d, os.urandom(hm.ROUND_ID_BYTES)
        self.context = self.he.key_holder.open_round(self.round_id, groups=groups, d=d)
        self.aggregator = HeAggregator(self.he.parameters, round_id=self.round_id, context_message=self.context,
                                       key_holder=self.he.key_holder_public, directory=self.he.directory, d=d)

    def client(self, cid: int, round_id: bytes | None = None) -> HeClient:
        return HeClient(cid, params=self.he.parameters, signing_key=self.he.identity(cid),
                        key_holder=self.he.key_holder_public, round_id=round_id or self.round_id, group_size=3,
                        bits=self.he.bits)

    def values(self, cid: int) -> np.ndarray:
        return (np.arange(self.d, dtype=np.uint32) * np.uint32(cid + 3) + np.uint32(cid)) % np.uint32(1 << 20)

    def upload(self, cid: int) -> bytes:
        return self.client(cid).upload(self.context, self.values(cid))


def _upload_fields(message: bytes):
    reader = Reader(wire.unframe(message, kind=hm.UPLOAD))
    return (reader.raw(16), reader.u32(), reader.raw(32), reader.u32(), reader.blob(max_size=1 << 30),
            reader.blob(max_size=1 << 10))


def he_tampered_upload(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        upload = rnd.upload(0)
        with decisive():
            rnd.aggregator.accept(0, _flip(upload, len(upload) // 2))
        return "the aggregator accepted a tampered ciphertext"

    return attempt("tampered-upload", p, "The network flips one bit inside a client's encrypted upload.", go)


def he_replayed_upload(p: str) -> Attempt:
    def go():
        old = HeRound()
        new = HeRound(old.he)
        replayed = old.upload(0)
        with decisive():
            new.aggregator.accept(0, replayed)
        return "the aggregator accepted an upload of an earlier round"

    return attempt("replay-earlier-round-upload", p, "An upload of round 1 is replayed into round 2.", go)


def he_upload_as_other(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        upload = rnd.upload(0)
        with decisive():
            rnd.aggregator.accept(1, upload)
        return "client 0's upload counted as client 1's"

    return attempt("upload-as-other-client", p, "Client 0's upload is replayed as client 1's.", go)


def he_replayed_context(p: str) -> Attempt:
    def go():
        old = HeRound()
        new = HeRound(old.he)
        with decisive():
            new.client(0).upload(old.context, new.values(0))
        return "a client encrypted under an earlier round's context"

    return attempt("replay-earlier-round-context", p, "The aggregator gives a client the previous round's "
                   "public context (whose key may have leaked).", go)


def he_substituted_context(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        own = new_context(rnd.he.parameters).serialize(save_secret_key=False)  # the aggregator holds its secret key
        forger, _ = crypto.ed25519_keypair()
        with decisive():
            rnd.client(0).upload(hm.encode_context(rnd.round_id, own, forger), rnd.values(0))
        return "client 0 encrypted under the aggregator's own key"

    return attempt("substituted-context", p, "The aggregator substitutes a context whose secret key it holds.", go)


def he_second_decryption(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        rnd.he.key_holder.decrypt(rnd.aggregator.sum_group(0, {c: rnd.upload(c) for c in range(3)}))
        single = rnd.aggregator.sum_group(0, {0: rnd.upload(0)})
        with decisive():
            reply = rnd.he.key_holder.decrypt(single)
        return f"client 0's input: {rnd.aggregator.open_result(0, reply)[:3]}..."

    return attempt("second-decryption-single-upload", p, "After the genuine group sum, the aggregator asks the key "
                   "holder to decrypt one client's ciphertext as the same group's sum.", go)


def he_sum_other_round(p: str) -> Attempt:
    def go():
        old = HeRound()
        request = old.aggregator.sum_group(0, {0: old.upload(0)})
        new = HeRound(old.he)
        with decisive():
            new.he.key_holder.decrypt(request)
        return "a decryption of the previous round's ciphertext"

    return attempt("sum-from-earlier-round", p, "The aggregator asks the key holder to decrypt a ciphertext of the "
                   "previous round.", go)


def he_sum_after_close(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        request = rnd.aggregator.sum_group(1, {0: rnd.upload(0)})
        rnd.he.key_holder.close_round()
        with decisive():
            rnd.he.key_holder.decrypt(request)
        return "a decryption after the round closed"

    return attempt("sum-after-round-closed", p, "The aggregator asks for a decryption after the round closed.", go)


def he_malformed_upload(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        honest = rnd.upload(0)
        r, c, fp, d, vector, signature = _upload_fields(honest)

        def rebuild(vec: bytes) -> bytes:
            return wire.frame(hm.UPLOAD, Writer().raw(r).u32(c).raw(fp).u32(d).blob(vec).blob(signature).payload())

        variants = [("empty", b""), ("truncated", honest[: len(honest) // 2]), ("trailing", honest + b"\x00"),
                    ("bare vector", vector), ("wrong kind", wire.frame(hm.SUM, honest[8:])),
                    ("huge declared length", honest[:4] + (0xFFFFFFFF).to_bytes(4, "little") + honest[8:]),
                    ("empty vector", rebuild(b"")), ("oversized vector", rebuild(vector * 2)),
                    ("None", None), ("str", "upload")]
        return refusals([(label, lambda bad=bad: _decisively(rnd.aggregator.accept, 0, bad))
                         for label, bad in variants])

    return attempt("malformed-upload", p, "Truncated, padded, mistyped and oversized uploads (10 variants).", go)


def he_malformed_sum(p: str) -> Attempt:
    def go():
        rnd = HeRound(groups=1)
        honest = rnd.aggregator.sum_group(0, {0: rnd.upload(0), 1: rnd.upload(1)})
        variants = [("empty", b""), ("truncated", honest[: len(honest) // 2]), ("trailing", honest + b"\x00"),
                    ("wrong kind", wire.frame(hm.UPLOAD, honest[8:])),
                    ("huge declared length", honest[:4] + (0xFFFFFFFF).to_bytes(4, "little") + honest[8:]),
                    ("None", None)]
        return refusals([(label, lambda bad=bad: _decisively(rnd.he.key_holder.decrypt, bad))
                         for label, bad in variants])

    return attempt("malformed-sum", p, "Malformed SUM messages sent to the key holder (6 variants).", go)


def he_too_few_clients(p: str) -> Attempt:
    def go():
        he = HeSum(bits=20)
        data = np.random.default_rng(3)
        values = {c: data.integers(0, 2**20, size=16, dtype=np.uint32) for c in range(3)}
        with decisive():
            result = he.run([Update(c, v) for c, v in values.items()], groups=[[0, 1, 2]],
                            dropouts=DropoutSchedule({0: "upload", 1: "upload"}))
        if np.array_equal(result.sums[0] & np.uint32(2**20 - 1), values[2]):
            return "client 2's individual input (the decrypted 'sum' of a group where only it uploaded)"
        return "a decrypted sum over a single upload"

    return attempt("too-few-clients", p, "In a group of 3, two clients drop (or their uploads are withheld); the "
                   "aggregator asks for the group's sum as usual.", go)


def he_single_upload_first(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        total = rnd.aggregator.add_group(0, {0: rnd.upload(0)})
        request = rnd.aggregator.request(0, total, contributors=3)  # lies about the count
        with decisive():
            reply = rnd.he.key_holder.decrypt(request)
        got = rnd.aggregator.open_result(0, reply)
        if np.array_equal(got, ring.lift(rnd.values(0), 20)):
            return "client 0's individual input (one upload decrypted as a group sum)"
        return "a decryption of a single upload"

    return attempt("single-upload-as-sum", p, "A MALICIOUS aggregator sends one client's ciphertext as a group's "
                   "first sum (the HE model assumes an honest-but-curious aggregator; documented limitation).",
                   go, in_scope=False)


# Registry ---------------------------------------------------------------------------------------------

Case = Callable[[str], Attempt]


def _secagg_cases(split_sizes: Sequence[int], extra: Mapping[str, Case] = {}) -> dict[str, Case]:  # noqa: B006
    return {
        "both-shares-one-request": both_shares_one_request,
        "both-shares-two-requests": both_shares_two_requests,
        "late-upload-both-masks": late_upload,
        "survivors-changed-after-signing": list_changed_after_signing,
        "inconsistent-survivors-one-client": one_client_misled,
        **{f"split-view-quorums-n{n}": functools.partial(split_view, n=n) for n in split_sizes},
        "too-few-signatures": too_few_signatures,
        "forged-consistency-signatures": forged_signatures,
        "replay-earlier-round": replay_earlier_round,
        "replay-other-session": replay_other_session,
        "replay-other-group": replay_other_group,
        "misaddressed-message": misaddressed,
        "replay-earlier-stage": replay_earlier_stage,
        "replay-unmask-request": replay_same_request,
        "skipped-stage": out_of_order,
        "tampered-share-ciphertext": tampered_share,
        "share-for-another-client": share_for_another,
        "substituted-round-key": substituted_key,
        "sybil-client": sybil,
        "malicious-client-bad-share": corrupted_share_from_client,
        **{f"continue-after-refused-{stage.replace('_', '-')}": functools.partial(continue_after_refusal, stage=stage)
           for stage in ("share_keys", "masked_input", "consistency_check")},
        "malformed-share-keys": malformed_keys,
        "malformed-masked-input": malformed_ciphertexts,
        "malformed-consistency-check": malformed_survivors,
        "malformed-unmask": malformed_unmask_request,
        "malformed-to-server": malformed_to_server,
        "group-of-two-keys": too_few_keys,
        "too-few-share-senders": too_few_ciphertexts,
        "too-few-survivors": too_few_survivors,
        "unmask-below-threshold": unmask_below_threshold,
        "group-below-minimum": group_below_minimum,
        **extra,
    }


#: protocol -> attempt name -> the function that runs it (``case(protocol)`` returns that ``Attempt``).
CASES: dict[str, dict[str, Case]] = {
    "secagg": _secagg_cases(split_sizes=(5, 6)),
    "secagg+": _secagg_cases(split_sizes=(9,), extra={"isolate-in-sparse-graph": isolate_in_sparse_graph}),
    "he": {
        "tampered-upload": he_tampered_upload,
        "replay-earlier-round-upload": he_replayed_upload,
        "upload-as-other-client": he_upload_as_other,
        "replay-earlier-round-context": he_replayed_context,
        "substituted-context": he_substituted_context,
        "second-decryption-single-upload": he_second_decryption,
        "sum-from-earlier-round": he_sum_other_round,
        "sum-after-round-closed": he_sum_after_close,
        "malformed-upload": he_malformed_upload,
        "malformed-sum": he_malformed_sum,
        "too-few-clients": he_too_few_clients,
        "single-upload-as-sum": he_single_upload_first,
    },
}
