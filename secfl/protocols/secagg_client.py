"""The client state machine of SecAgg/SecAgg+ over a bound instance (Bonawitz et al. CCS'17; Bell et al. CCS'20).

Threat model: the server may be malicious (drop, replay, reorder or forge messages, lie about who
survived, show clients different rosters, sessions or views, re-run instances) and may collude with
up to c of this client's neighbours (see ``secagg_params``). The client:

- takes part only in the instance it was invited to (roster of exactly n ids containing it), and
  refuses any signer, entry or list outside its k neighbours in that instance's graph;
- contributes its input to at most one instance, ever (``ContributionRecord``);
- excludes (never aborts on) a neighbour whose keys are invalid or whose shares do not decrypt;
- signs one statement of which neighbours survived, and reveals, per neighbour whose shares it
  holds, ONE share: the self-mask share if the neighbour survived in that statement, the key share
  otherwise, and only after t neighbours signed statements that list this client as alive;
- reveals the pairwise mask key with a neighbour only when shown that neighbour's own signatures on
  shares that cannot rebuild what it advertised (a proof no honest dealer can be the subject of).

The argument that this keeps every input hidden is in protocols/secagg/SPEC.md. Every message is
bound to the instance digest, sender and recipient. A failed check of the server's conduct raises
``ProtocolIntegrityError`` (opaque) and the client answers nothing more in this instance.

Each method consumes the server's message of a stage and returns the client's reply (bytes only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError, ProtocolError, ProtocolIntegrityError
from secfl.hazmat import crypto, prg, shamir
from secfl.hazmat.codec import Writer
from secfl.hazmat.randomness import OS_RANDOM, Randomness
from secfl.protocols import secagg_graph
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_params import SecAggParams
from secfl.protocols.secagg_record import ContributionRecord

ABORTED = -1  # a client's stage once it refused a step: it answers nothing more in this instance

STAGES = ("advertise_keys", "share_keys", "check_shares", "masked_input", "consistency_check", "unmask", "convict")

Values = np.ndarray | Callable[[int], np.ndarray]


def advertise_message(instance: bytes, entry: m.KeyEntry) -> bytes:
    """What a client signs when it advertises its round keys."""
    return crypto.hkdf_info("secagg-advertise", instance, entry.client, entry.c_public, entry.s_public,
                            entry.commitment)


def commit(seed: bytes) -> bytes:
    """The hiding, binding commitment to a 256-bit random self-mask seed."""
    return hashlib.sha256(b"secfl-v1 secagg self-mask commitment" + seed).digest()


def masked_message(instance: bytes, client: int, peers: tuple[int, ...], words: np.ndarray) -> bytes:
    """What a client signs over its masked upload: the peers it masked with and a digest of the words."""
    digest = hashlib.sha256(np.ascontiguousarray(words).view(np.uint8)).digest()
    return crypto.hkdf_info("secagg-masked", instance, client, len(peers), *peers, digest)


def alive_message(instance: bytes, client: int, alive: tuple[int, ...]) -> bytes:
    """What a client signs at the consistency check: which of its neighbours survived."""
    return crypto.hkdf_info("secagg-alive", instance, client, len(alive), *alive)


def share_digest(elements: np.ndarray) -> bytes:
    """A hiding digest of one share (9 uniformly random field elements when threshold >= 2)."""
    return hashlib.sha256(np.asarray(elements, dtype="<u4").tobytes()).digest()


def share_message(instance: bytes, dealer: int, holder: int, digests: tuple[bytes, bytes]) -> bytes:
    """What a dealer signs once per holder: the digests of the two shares it deals to it (self mask,
    key). A holder reveals one share with the other's digest: it can show the signed share, never alter it."""
    return crypto.hkdf_info("secagg-dealt", instance, dealer, holder, *digests)


def signed_digests(kind: int, elements: np.ndarray, other: bytes) -> tuple[bytes, bytes]:
    """The pair of digests a revealed share of ``kind`` was signed under, given the other one's digest."""
    mine = share_digest(elements)
    return (mine, other) if kind == m.SELF_MASK else (other, mine)


def dealer_cheated(instance: bytes, dealer: m.KeyEntry, kind: int, shares, threshold: int,
                   directory: KeyDirectory) -> bool:
    """True iff ``shares`` (holder -> (elements, the other share's digest, signature)) prove that ``dealer`` dealt shares that do not
    rebuild the secret it advertised: at least ``threshold`` shares, each signed by the dealer, that lie
    on no polynomial of degree < threshold, or on one whose secret fails the dealer's commitment (seed)
    or public key (mask key). An honest dealer's signed shares can never be such a proof."""
    if len(shares) < threshold:
        return False
    public = directory.public_key(dealer.client)
    for holder, (elements, other, signature) in shares.items():
        try:
            crypto.verify(public, signature,
                          share_message(instance, dealer.client, holder, signed_digests(kind, elements, other)))
        except ProtocolError:
            return False
    holders = sorted(shares)
    stacked = np.stack([shares[h][0] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
    if int(stacked.max()) >= shamir.PRIME:
        return True  # a signed share outside the field: no honest dealer signs one
    try:
        secret = shamir.decode_secret(shamir.combine([h + 1 for h in holders], stacked, threshold=threshold)[0])
    except (ProtocolIntegrityError, ValueError):
        return True  # the signed shares lie on no polynomial of degree < threshold
    if kind == m.SELF_MASK:
        return commit(secret) != dealer.commitment
    return crypto.x25519_public(secret) != dealer.s_public


def pair_info(purpose: str, instance: bytes, u: int, v: int) -> bytes:
    return crypto.hkdf_info(purpose, instance, min(u, v), max(u, v))


def share_aad(instance: bytes, sender: int, recipient: int) -> bytes:
    return crypto.hkdf_info("secagg-share-aad", instance, sender, recipient)


def self_mask_info(instance: bytes, client: int) -> bytes:
    return crypto.hkdf_info("secagg-self", instance, client)


def input_key(*parts: bytes | int | str) -> bytes:
    """The key under which a ``ContributionRecord`` remembers an input: a digest of what it depends on
    (for instance the task, the round and the digest of the model it was trained from)."""
    return hashlib.sha256(crypto.hkdf_info("secagg-input", *parts)).digest()


class SecAggClient:
    """One client in one bound instance.

    Args:
        client_id: this client's id (a member of ``instance.roster``).
        instance: the instance it was invited to (session, round, group, roster).
        params: the parameters this client derived itself for groups of ``params.n``; a roster of
            another size is refused.
        values: its input, a 1-D uint32/uint64 vector of ring words, or a function of the bound
            group size n returning it (so a noise share is computed from the bound n).
        signing_key: this client's long-term Ed25519 private key.
        directory: long-term public keys of every client (the PKI).
        record: the inputs this client already contributed; ``input_key`` is spent there before
            the masked input leaves.
        input_key: 32 bytes naming this input (``input_key(...)``).
        randomness: OS CSPRNG unless a known-answer test mode is passed explicitly.

    Raises:
        ProtocolIntegrityError: the roster does not contain this client or has another size than n.
        ConfigurationError: values that are not ring words.
    """

    def __init__(self, client_id: int, *, instance: Instance, params: SecAggParams, values: Values,
                 signing_key: bytes, directory: KeyDirectory, record: ContributionRecord, input_key: bytes,
                 randomness: Randomness = OS_RANDOM) -> None:
        if instance.n != params.n or client_id not in instance:
            raise ProtocolIntegrityError()
        if not callable(values):
            _check_values(client_id, values)
        self.id, self.instance, self.params, self.directory, self.rng = client_id, instance, params, directory, randomness
        self.digest = instance.digest
        self.ctx = m.Header(self.digest, client_id, m.SERVER)
        self.values, self.signing_key, self.record, self.input_key = values, signing_key, record, input_key
        self.graph = secagg_graph.neighbours(instance, params.neighbours, client_id)
        self.cap = m.max_message_bytes(len(self.graph), 0, 8)  # the server never sends vectors
        self.stage = 0
        self.c_sk, self.c_pk = crypto.x25519_keypair(randomness)
        self.s_sk, self.s_pk = crypto.x25519_keypair(randomness)
        self.b_seed = randomness.bytes(32)

    def _enter(self, stage: int) -> None:
        if self.stage != stage:  # replay, reordering, a second request, or any request after a refusal
            raise ProtocolIntegrityError()
        self.stage = ABORTED  # until the step completes: a refused step ends this client's instance

    def _done(self, stage: int, reply: bytes) -> bytes:
        self.stage = stage + 1
        return reply

    def _open(self, data: object, kind: int):
        return m.open_message(data, kind=kind, expect=self.ctx.reply(), max_bytes=self.cap)

    def _neighbours_only(self, ids) -> None:
        if not set(ids) <= self.graph:
            raise ProtocolIntegrityError()

    def advertise_keys(self) -> bytes:
        """Stage 0: fresh round keys and the commitment to the self-mask seed, signed for this instance."""
        self._enter(0)
        unsigned = m.KeyEntry(self.id, self.c_pk, self.s_pk, commit(self.b_seed), b"")
        signature = crypto.sign(self.signing_key, advertise_message(self.digest, unsigned))
        entry = m.KeyEntry(self.id, self.c_pk, self.s_pk, unsigned.commitment, signature)
        return self._done(0, m.encode(m.ADVERTISE, self.ctx, m.write_entry(Writer(), entry)))

    def share_keys(self, data: object) -> bytes:
        """Stage 1: check the neighbours' keys (excluding any invalid one), share b and s_sk with the rest."""
        self._enter(1)
        reader = self._open(data, m.KEYS)
        count = reader.count(item_size=m.ENTRY_BYTES, max_count=len(self.graph))
        entries = [m.read_entry(reader) for _ in range(count)]
        reader.done()
        self._neighbours_only(e.client for e in entries)
        if len({e.client for e in entries}) != len(entries):
            raise ProtocolIntegrityError()
        self.keys: dict[int, tuple[bytes, bytes, m.KeyEntry]] = {}
        for entry in entries:
            pair = self._check_entry(entry)
            if pair is not None:
                self.keys[entry.client] = (*pair, entry)
        if len(self.keys) < self.params.threshold:
            raise InsufficientParticipantsError(f"client {self.id} has fewer than t valid neighbours")
        holders = sorted(self.keys)
        secrets = np.stack([shamir.encode_secret(self.b_seed), shamir.encode_secret(self.s_sk)])
        shares = shamir.split(secrets, xs=[v + 1 for v in holders], threshold=self.params.threshold,
                              randomness=self.rng)
        blobs = {}
        for v, share in zip(holders, shares):
            digests = (share_digest(share[m.SELF_MASK]), share_digest(share[m.KEY_SHARE]))
            signature = crypto.sign(self.signing_key, share_message(self.digest, self.id, v, digests))
            plaintext = Writer().u32(self.id).u32(v).raw(share.astype("<u4").tobytes()).raw(signature).payload()
            blobs[v] = crypto.seal(self.keys[v][0], plaintext, aad=share_aad(self.digest, self.id, v),
                                   randomness=self.rng)
        return self._done(1, m.encode(m.SHARES, self.ctx, m.write_blobs(Writer(), blobs)))

    def _check_entry(self, entry: m.KeyEntry) -> tuple[bytes, bytes] | None:
        """(share key, mask key) with this neighbour, or None if its advertisement is unusable."""
        if entry.c_public in (self.c_pk, self.s_pk) or entry.s_public in (self.c_pk, self.s_pk):
            return None  # a copy of this client's own keys
        try:
            crypto.verify(self.directory.public_key(entry.client), entry.signature,
                          advertise_message(self.digest, entry))
            share_key = crypto.agree(self.c_sk, entry.c_public, info=pair_info("secagg-share", self.digest,
                                                                               self.id, entry.client))
            mask_key = crypto.agree(self.s_sk, entry.s_public, info=pair_info("secagg-mask", self.digest,
                                                                              self.id, entry.client))
        except ProtocolError:  # bad signature, unknown signer, low-order point
            return None
        return share_key, mask_key

    def check_shares(self, data: object) -> bytes:
        """Stage 2: decrypt the shares received; report whose decrypted (a failure excludes its sender)."""
        self._enter(2)
        reader = self._open(data, m.CIPHERTEXTS)
        blobs = m.read_blobs(reader, max_count=len(self.graph), blob_size=m.SHARE_CIPHERTEXT)
        reader.done()
        if not set(blobs) <= set(self.keys):
            raise ProtocolIntegrityError()
        self.held: dict[int, tuple[np.ndarray, bytes, tuple[bytes, bytes]]] = {}  # dealer -> shares, signature, digests
        for u, blob in blobs.items():
            try:
                plaintext = crypto.open_sealed(self.keys[u][0], blob, aad=share_aad(self.digest, u, self.id))
            except ProtocolError:
                continue
            if (int.from_bytes(plaintext[:4], "little"), int.from_bytes(plaintext[4:8], "little")) != (u, self.id):
                continue
            held = self._dealt(u, plaintext[8:])
            if held is not None:
                self.held[u] = held
        return self._done(2, m.encode(m.ACCEPTED, self.ctx, Writer().ids(sorted(self.held))))

    def _dealt(self, dealer: int, body: bytes) -> tuple[np.ndarray, bytes, tuple[bytes, bytes]] | None:
        """(the two shares, the dealer's signature, their digests) from a decrypted plaintext, or None."""
        elements = np.frombuffer(body[:8 * m.SHARE_WORDS], dtype="<u4").astype(np.uint64).reshape(2, m.SHARE_WORDS)
        signature = bytes(body[8 * m.SHARE_WORDS:])
        if int(elements.max()) >= shamir.PRIME:
            return None
        digests = (share_digest(elements[0]), share_digest(elements[1]))
        try:
            crypto.verify(self.directory.public_key(dealer), signature,
                          share_message(self.digest, dealer, self.id, digests))
        except ProtocolError:
            return None
        return elements, signature, digests

    def masked_input(self, data: object) -> bytes:
        """Stage 3: mask with the qualified neighbours, spend the input key, send x + masks, signed."""
        self._enter(3)
        reader = self._open(data, m.QUALIFIED)
        qualified = m.read_ids(reader, max_count=len(self.graph))
        reader.done()
        self._neighbours_only(qualified)
        self.masked_with = tuple(v for v in qualified if v in self.keys)
        if len(self.masked_with) < self.params.threshold:
            raise InsufficientParticipantsError(f"client {self.id} has fewer than t qualified neighbours")
        values = self.values(self.params.n) if callable(self.values) else self.values
        _check_values(self.id, values)
        self.record.spend(self.input_key)  # refuses a second contribution of this input, durably
        masked = np.array(values, copy=True)
        prg.add_mask(masked, crypto.derive(self.b_seed, info=self_mask_info(self.digest, self.id)))
        for v in self.masked_with:
            prg.add_mask(masked, self.keys[v][1], sign=1 if self.id < v else -1)
        signature = crypto.sign(self.signing_key, masked_message(self.digest, self.id, self.masked_with, masked))
        body = Writer().ids(self.masked_with).words(masked).raw(signature)
        return self._done(3, m.encode(m.MASKED, self.ctx, body))

    def consistency_check(self, data: object) -> bytes:
        """Stage 4: sign which neighbours survived (one statement per instance, ever)."""
        self._enter(4)
        reader = self._open(data, m.SURVIVORS)
        alive = m.read_ids(reader, max_count=len(self.graph))
        reader.done()
        self._neighbours_only(alive)
        self.alive = frozenset(alive)
        signature = crypto.sign(self.signing_key, alive_message(self.digest, self.id, alive))
        return self._done(4, m.encode(m.CONSISTENCY, self.ctx, Writer().raw(signature)))

    def unmask(self, data: object) -> bytes:
        """Stage 5: after t neighbours' signed statements list this client alive, reveal ONE share per held peer."""
        self._enter(5)
        reader = self._open(data, m.UNMASK_REQUEST)
        statements = m.read_statements(reader, max_count=len(self.graph))
        reader.done()
        self._neighbours_only(statements)
        for signer, (alive, signature) in statements.items():
            if self.id not in alive:
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(signer), signature, alive_message(self.digest, signer, alive))
        if len(statements) < self.params.threshold:
            raise InsufficientParticipantsError(f"client {self.id}: fewer than t neighbours confirm it survived")
        reveal = {}
        for u, (elements, signature, digests) in self.held.items():
            kind = m.SELF_MASK if u in self.alive else m.KEY_SHARE
            reveal[u] = (kind, elements[kind], digests[1 - kind], signature)
        return self._done(5, m.encode(m.UNMASK, self.ctx, m.write_shares(Writer(), reveal)))

    def convict(self, data: object) -> bytes:
        """Stage 6 (only if a neighbour cheated): for each neighbour this client masked with and the server
        proves dealt bad shares, reveal the pairwise mask key with it, so its masks can be removed."""
        self._enter(6)
        reader = self._open(data, m.CONVICTION)
        count = reader.count(item_size=9, max_count=len(self.graph))
        convictions = [m.read_conviction(reader, max_count=len(self.graph)) for _ in range(count)]
        reader.done()
        keys = Writer().u32(len(convictions))
        seen = set()
        for owner, kind, shares in convictions:
            if owner in seen or owner not in self.masked_with:
                raise ProtocolIntegrityError()
            seen.add(owner)
            if not dealer_cheated(self.digest, self.keys[owner][2], kind, shares, self.params.threshold,
                                  self.directory):
                raise ProtocolIntegrityError()
            keys.u32(owner).raw(self.keys[owner][1])
        return self._done(6, m.encode(m.PAIR_KEYS, self.ctx, keys))


def _check_values(client: int, values: object) -> None:
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype not in (np.uint32, np.uint64):
        raise ConfigurationError(
            f"SecAgg sums 1-D ring words (uint32/uint64) but client {client} has "
            f"{getattr(values, 'dtype', type(values).__name__)}; put Quantize last in the stages"
        )
