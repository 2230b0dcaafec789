"""The client state machine of SecAgg/SecAgg+ (Bonawitz et al. CCS'17; Bell et al. CCS'20).

Threat model: the server may be malicious (drop, replay, reorder or forge messages, lie about who
survived) and may collude with up to c of this client's neighbours (see ``secagg_params``). The
client only ever releases, per neighbour, ONE of the two shares it holds: the self-mask share if the
neighbour survived, the key share if it dropped, after checking that the survivor list is signed by
at least t clients, contains this client, and agrees with what the client itself saw. Every message
is bound to (session, round, group, sender, recipient); anything else is refused. Any failed check
raises ``ProtocolIntegrityError`` (opaque) and the client sends nothing more this round.

Each method consumes the server's message of a stage and returns the client's reply (bytes only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError, ProtocolIntegrityError
from secfl.hazmat import crypto, prg, shamir
from secfl.hazmat.codec import Writer
from secfl.hazmat.randomness import OS_RANDOM, Randomness
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_params import SecAggParams, graph_seed, neighbours_of

ABORTED = -1  # a client's stage once it refused a step: it answers nothing more this round

STAGES = ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmask")


def advertise_message(header: m.Header, entry: m.KeyEntry) -> bytes:
    """What a client signs when it advertises its round keys."""
    return crypto.hkdf_info("secagg-advertise", header.session, header.round, header.group, entry.client,
                            entry.c_public, entry.s_public, entry.commitment)


def commit(seed: bytes) -> bytes:
    """The hiding, binding commitment to a 256-bit random self-mask seed."""
    return hashlib.sha256(b"secfl-v1 secagg self-mask commitment" + seed).digest()


def consistency_message(header: m.Header, survivors: Sequence[int]) -> bytes:
    return crypto.hkdf_info("secagg-consistency", header.session, header.round, header.group, len(survivors),
                            *sorted(survivors))


def pair_info(purpose: str, header: m.Header, u: int, v: int) -> bytes:
    return crypto.hkdf_info(purpose, header.session, header.round, header.group, min(u, v), max(u, v))


def max_message_bytes(n: int, length: int, itemsize: int) -> int:
    """A cap on any SecAgg message in a group of n with vectors of ``length`` words (keys lists dominate)."""
    return 64 + n * (m.ENTRY_BYTES + 8 + m.SHARE_CIPHERTEXT + m.SIG_BYTES) + length * itemsize


class SecAggClient:
    """One client of one group in one round.

    Args:
        client_id: this client's id (< 2^31 - 2, the Shamir field bounds ids).
        header: the round's binding (session, round, group); sender/recipient are filled per message.
        params: the group's parameters (the client checks them itself, never trusting the server).
        values: this client's input, a 1-D uint32 or uint64 vector of ring words.
        signing_key: this client's long-term Ed25519 private key.
        directory: long-term public keys of every client (the PKI).
        randomness: OS CSPRNG unless a known-answer test mode is passed explicitly.
    """

    def __init__(self, client_id: int, *, header: m.Header, params: SecAggParams, values: np.ndarray,
                 signing_key: bytes, directory: KeyDirectory, randomness: Randomness = OS_RANDOM) -> None:
        if values.ndim != 1 or values.dtype not in (np.uint32, np.uint64):
            raise ConfigurationError(
                f"SecAgg sums ring words (uint32/uint64) but client {client_id} has {values.dtype}; "
                "put Quantize last in the stages"
            )
        self.id, self.params, self.directory, self.rng = client_id, params, directory, randomness
        self.ctx = m.Header(header.session, header.round, header.group, client_id, m.SERVER)
        self.values, self.signing_key = values, signing_key
        self.cap = max_message_bytes(params.n, values.size, values.itemsize)
        self.stage = 0
        self.c_sk, self.c_pk = crypto.x25519_keypair(randomness)
        self.s_sk, self.s_pk = crypto.x25519_keypair(randomness)
        self.b_seed = randomness.bytes(32)

    def _enter(self, stage: int) -> None:
        if self.stage != stage:  # replay, reordering, a second request, or any request after a refusal
            raise ProtocolIntegrityError()
        self.stage = ABORTED  # until the step completes: a refused step ends this client's round

    def _done(self, stage: int, reply: bytes) -> bytes:
        self.stage = stage + 1
        return reply

    def _open(self, data: bytes, kind: int):
        return m.open_message(data, kind=kind, expect=self.ctx.reply(), max_bytes=self.cap)

    def advertise_keys(self) -> bytes:
        """Stage 0: fresh round keys, signed with the long-term key."""
        self._enter(0)
        unsigned = m.KeyEntry(self.id, self.c_pk, self.s_pk, commit(self.b_seed), b"")
        signature = crypto.sign(self.signing_key, advertise_message(self.ctx, unsigned))
        entry = m.KeyEntry(self.id, self.c_pk, self.s_pk, unsigned.commitment, signature)
        return self._done(0, m.encode(m.ADVERTISE, self.ctx, m.write_entry(Writer(), entry)))

    def share_keys(self, data: bytes) -> bytes:
        """Stage 1: check every advertised key, then send each neighbour its encrypted shares."""
        self._enter(1)
        reader = self._open(data, m.KEYS)
        n = reader.count(item_size=m.ENTRY_BYTES, max_count=self.params.n)
        entries = {}
        for _ in range(n):
            entry = m.read_entry(reader)
            if entry.client in entries:
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(entry.client), entry.signature, advertise_message(self.ctx, entry))
            entries[entry.client] = entry
        reader.done()
        mine = entries.get(self.id)
        if mine is None or (mine.c_public, mine.s_public) != (self.c_pk, self.s_pk):
            raise ProtocolIntegrityError()
        if len({(e.c_public, e.s_public) for e in entries.values()}) != len(entries):
            raise ProtocolIntegrityError()  # a copied key would let the server impersonate
        self.keys = entries
        seed = graph_seed(self.ctx.session, self.ctx.round, self.ctx.group,
                          [(e.client, e.c_public, e.s_public) for e in entries.values()])
        self.neighbours = neighbours_of(list(entries), self.params.neighbours, seed)[self.id]
        if len(self.neighbours) < self.params.threshold:
            raise InsufficientParticipantsError(f"client {self.id} has fewer than t neighbours left")
        holders = sorted(self.neighbours)
        secrets = np.stack([shamir.encode_secret(self.b_seed), shamir.encode_secret(self.s_sk)])
        shares = shamir.split(secrets, xs=[v + 1 for v in holders], threshold=self.params.threshold,
                              randomness=self.rng)
        blobs = {}
        for v, share in zip(holders, shares):
            plaintext = Writer().u32(self.id).u32(v).raw(share.astype("<u4").tobytes()).payload()
            key = crypto.agree(self.c_sk, entries[v].c_public, info=pair_info("secagg-share", self.ctx, self.id, v))
            blobs[v] = crypto.seal(key, plaintext, aad=crypto.hkdf_info("secagg-share-aad", self.ctx.session,
                                   self.ctx.round, self.ctx.group, self.id, v), randomness=self.rng)
        return self._done(1, m.encode(m.SHARES, self.ctx, m.write_blobs(Writer(), blobs)))

    def masked_input(self, data: bytes) -> bytes:
        """Stage 2: decrypt the shares received, then send x + PRG(b) + sum of signed pairwise masks."""
        self._enter(2)
        reader = self._open(data, m.CIPHERTEXTS)
        blobs = m.read_blobs(reader, max_count=self.params.n, blob_size=m.SHARE_CIPHERTEXT)
        reader.done()
        if not set(blobs) <= self.neighbours:
            raise ProtocolIntegrityError()
        if len(blobs) < self.params.threshold:
            raise InsufficientParticipantsError(f"client {self.id} received shares from fewer than t neighbours")
        self.held = {}
        for u, blob in blobs.items():
            key = crypto.agree(self.c_sk, self.keys[u].c_public, info=pair_info("secagg-share", self.ctx, u, self.id))
            plaintext = crypto.open_sealed(key, blob, aad=crypto.hkdf_info(
                "secagg-share-aad", self.ctx.session, self.ctx.round, self.ctx.group, u, self.id))
            body = np.frombuffer(plaintext[8:], dtype="<u4").astype(np.uint64).reshape(2, m.SHARE_WORDS)
            if int.from_bytes(plaintext[:4], "little") != u or int.from_bytes(plaintext[4:8], "little") != self.id:
                raise ProtocolIntegrityError()
            self.held[u] = body
        self.shared_with = frozenset(blobs)
        masked = self.values.copy()
        prg.add_mask(masked, crypto.derive(self.b_seed, info=self_mask_info(self.ctx, self.id)))
        for v in sorted(self.shared_with):
            key = crypto.agree(self.s_sk, self.keys[v].s_public, info=pair_info("secagg-mask", self.ctx, self.id, v))
            prg.add_mask(masked, key, sign=1 if self.id < v else -1)
        return self._done(2, m.encode(m.MASKED, self.ctx, Writer().words(masked)))

    def consistency_check(self, data: bytes) -> bytes:
        """Stage 3: sign the survivor list if it is plausible from this client's own view."""
        self._enter(3)
        reader = self._open(data, m.SURVIVORS)
        survivors = reader.ids(max_count=self.params.n)
        reader.done()
        self._check_survivors(survivors)
        self.survivors = frozenset(survivors)
        signature = crypto.sign(self.signing_key, consistency_message(self.ctx, survivors))
        return self._done(3, m.encode(m.CONSISTENCY, self.ctx, Writer().raw(signature)))

    def _check_survivors(self, survivors: Sequence[int]) -> None:
        listed = set(survivors)
        if (len(listed) != len(survivors) or self.id not in listed or not listed <= set(self.keys)
                or len(listed) < self.params.threshold):
            raise ProtocolIntegrityError()

    def unmask(self, data: bytes) -> bytes:
        """Stage 4: verify >= quorum signatures over the same list, then reveal ONE share per neighbour."""
        self._enter(4)
        reader = self._open(data, m.UNMASK_REQUEST)
        survivors = reader.ids(max_count=self.params.n)
        dropped = reader.ids(max_count=self.params.n)
        n = reader.count(item_size=4 + m.SIG_BYTES, max_count=self.params.n)
        signatures = {}
        for _ in range(n):
            signer, signature = reader.u32(), reader.raw(m.SIG_BYTES)
            if signer in signatures:
                raise ProtocolIntegrityError()
            signatures[signer] = signature
        reader.done()
        if frozenset(survivors) != self.survivors or set(survivors) & set(dropped):
            raise ProtocolIntegrityError()  # listed as both dropped and surviving, or a changed list
        if set(dropped) != (self.shared_with - self.survivors):
            raise ProtocolIntegrityError()
        if not set(signatures) <= self.survivors or len(signatures) < self.params.quorum:
            raise ProtocolIntegrityError()
        message = consistency_message(self.ctx, survivors)
        for signer, signature in signatures.items():
            crypto.verify(self.directory.public_key(signer), signature, message)
        reveal = {u: ((m.SELF_MASK, self.held[u][0]) if u in self.survivors else (m.KEY_SHARE, self.held[u][1]))
                  for u in self.shared_with}
        return self._done(4, m.encode(m.UNMASK, self.ctx, m.write_shares(Writer(), reveal)))


def self_mask_info(header: m.Header, client: int) -> bytes:
    return crypto.hkdf_info("secagg-self", header.session, header.round, header.group, client)
