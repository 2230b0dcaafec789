"""The server state machine of SecAgg/SecAgg+ for one bound instance.

Threat model: this is the party the protocol protects against; its code is honest but it only ever
holds what clients send (``received``). It learns the sum over the survivors U3, who survived, and
nothing about an individual input. A faulty client is excluded, never fatal: an advertisement with
a bad signature or a low-order key, shares its neighbours cannot decrypt, a masked upload whose
signature fails, or a Shamir share a holder altered (every share carries its dealer's signature;
error-correcting decoding finds it first) removes that client, and the instance completes while t
honest share holders remain. A dealer whose own signed shares cannot rebuild what it advertised is
convicted: its input leaves the sum and the survivors that masked with it, shown the proof, reveal
their pairwise keys with it (one more message, only then). Too few participants raises ``InsufficientParticipantsError``: never a sum over
fewer than t inputs, never a wrong sum (reconstructed secrets are checked against the commitment
or the public key they were advertised with).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secfl.exceptions import InsufficientParticipantsError, ProtocolError, ProtocolIntegrityError
from secfl.hazmat import crypto, prg, shamir, wire
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_graph
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_client import (
    advertise_message, alive_message, commit, dealer_cheated, masked_message, pair_info, self_mask_info,
    share_message, signed_digests,
)
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_params import SecAggParams


class SecAggServer:
    """Drive one instance: each ``receive_*`` takes the clients' messages and returns the replies."""

    def __init__(self, *, instance: Instance, params: SecAggParams, directory: KeyDirectory,
                 length: int, dtype: np.dtype) -> None:
        if instance.n != params.n:
            raise ValueError(f"parameters for n = {params.n} but the roster has {instance.n} members")
        self.instance, self.params, self.directory = instance, params, directory
        self.digest = instance.digest
        self.length, self.dtype = length, np.dtype(dtype)
        self.graph = secagg_graph.graph(instance, params.neighbours)
        self.cap = m.max_message_bytes(params.neighbours, length, self.dtype.itemsize)
        self.received: dict[int, list[bytes]] = {}
        self.rejected: set[int] = set()
        self._probe, _ = crypto.x25519_keypair()  # a throwaway key: exchanging with it exposes low-order points

    def _open(self, client: int, data: object, kind: int):
        reader = m.open_message(data, kind=kind, expect=m.Header(self.digest, client, m.SERVER), max_bytes=self.cap)
        self.received.setdefault(client, []).append(data if isinstance(data, bytes) else bytes(wire.view(data)))
        return reader

    def _parse_each(self, messages: Mapping[int, object], parse, among) -> dict:
        out = {}
        for client in sorted(c for c in messages if c in among):
            try:
                out[client] = parse(client, messages[client])
            except ProtocolError:  # malformed or failed integrity: this client counts as dropped
                self.rejected.add(client)
        return out

    def _need(self, alive, stage: str) -> None:
        if len(alive) < self.params.threshold:
            raise InsufficientParticipantsError(
                f"group {self.instance.group}: {len(alive)} clients left at {stage}, {self.params.threshold} needed")

    def _to(self, client: int) -> m.Header:
        return m.Header(self.digest, m.SERVER, client)

    def receive_advertise(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Keep the members whose advertisement verifies and whose keys are usable; send each its neighbours'."""
        def parse(client, data):
            reader = self._open(client, data, m.ADVERTISE)
            entry = m.read_entry(reader)
            reader.done()
            if entry.client != client:
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(client), entry.signature, advertise_message(self.digest, entry))
            for key in (entry.c_public, entry.s_public):
                crypto.agree(self._probe, key, info=b"probe")  # low-order point: ProtocolIntegrityError
            return entry

        self.keys = self._parse_each(messages, parse, frozenset(self.instance.roster))
        self._need(self.keys, "advertise_keys")
        replies = {}
        for c in self.keys:
            body = Writer()
            peers = sorted(v for v in self.graph[c] if v in self.keys)
            body.u32(len(peers))
            for v in peers:
                m.write_entry(body, self.keys[v])
            replies[c] = m.encode(m.KEYS, self._to(c), body)
        return replies

    def receive_shares(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Relay each share ciphertext whose pair is mutual (both sides sent one)."""
        def parse(client, data):
            reader = self._open(client, data, m.SHARES)
            blobs = m.read_blobs(reader, max_count=self.params.neighbours, blob_size=m.SHARE_CIPHERTEXT)
            reader.done()
            if not set(blobs) <= self.graph[client] or len(blobs) < self.params.threshold:
                raise ProtocolIntegrityError()
            return blobs

        self.sent = self._parse_each(messages, parse, self.keys)
        self._need(self.sent, "share_keys")
        self.delivered = {v: {u: self.sent[u][v] for u in sorted(self.graph[v]) if u in self.sent and v in self.sent[u]
                              and u in self.sent[v]} for v in self.sent}
        return {v: m.encode(m.CIPHERTEXTS, self._to(v), m.write_blobs(Writer(), blobs))
                for v, blobs in self.delivered.items()}

    def receive_accepted(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Qualify the clients whose shares at least t neighbours decrypted; tell each its qualified peers."""
        def parse(client, data):
            reader = self._open(client, data, m.ACCEPTED)
            accepted = m.read_ids(reader, max_count=self.params.neighbours)
            reader.done()
            if not set(accepted) <= set(self.delivered[client]):
                raise ProtocolIntegrityError()
            return frozenset(accepted)

        self.accepted = self._parse_each(messages, parse, self.delivered)
        holders: dict[int, int] = {}
        for accepted in self.accepted.values():
            for u in accepted:
                holders[u] = holders.get(u, 0) + 1
        self.qualified = frozenset(u for u, count in holders.items() if count >= self.params.threshold)
        self.offered = {c: tuple(sorted(v for v in self.delivered[c] if v in self.qualified))
                        for c in self.accepted if c in self.qualified}
        self._need(self.offered, "check_shares")
        return {c: m.encode(m.QUALIFIED, self._to(c), Writer().ids(peers)) for c, peers in self.offered.items()}

    def receive_masked(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Keep the signed masked inputs; tell each survivor which of its neighbours survived."""
        def parse(client, data):
            reader = self._open(client, data, m.MASKED)
            peers = m.read_ids(reader, max_count=self.params.neighbours)
            words = reader.words(length=self.length, itemsize=self.dtype.itemsize)
            signature = reader.raw(m.SIG_BYTES)
            reader.done()
            if not set(peers) <= set(self.offered[client]):
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(client), signature, masked_message(self.digest, client, peers, words))
            return words, frozenset(peers)

        self.masked = self._parse_each(messages, parse, self.offered)
        self._need(self.masked, "masked_input")
        self.survivors = tuple(sorted(self.masked))
        self.alive = {c: tuple(sorted(v for v in self.graph[c] if v in self.masked)) for c in self.survivors}
        return {c: m.encode(m.SURVIVORS, self._to(c), Writer().ids(alive)) for c, alive in self.alive.items()}

    def receive_consistency(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Collect the signed statements; send each signer the statements of its neighbours that list it alive."""
        def parse(client, data):
            reader = self._open(client, data, m.CONSISTENCY)
            signature = reader.raw(m.SIG_BYTES)
            reader.done()
            crypto.verify(self.directory.public_key(client), signature,
                          alive_message(self.digest, client, self.alive[client]))
            return signature

        signatures = self._parse_each(messages, parse, self.alive)
        replies = {}
        for c in signatures:
            statements = {v: (self.alive[v], signatures[v]) for v in self.graph[c] if v in signatures
                          and c in self.alive[v]}
            if len(statements) >= self.params.threshold:  # fewer: the client would refuse
                replies[c] = m.encode(m.UNMASK_REQUEST, self._to(c), m.write_statements(Writer(), statements))
        self._need(replies, "consistency_check")
        return replies

    def receive_unmask(self, messages: Mapping[int, object]) -> dict[int, bytes]:
        """Rebuild the self masks of survivors and the keys of those who dropped. A secret that cannot be
        rebuilt from its dealer's own signed shares convicts the dealer: the survivors that masked with it
        get the proof (CONVICTION) and answer with their pairwise keys. Returns those requests (usually
        none); ``receive_pair_keys`` then returns the sum."""
        def parse(client, data):
            reader = self._open(client, data, m.UNMASK)
            shares = m.read_shares(reader, max_count=self.params.neighbours)
            reader.done()
            alive = set(self.alive[client])
            expected = {u: (m.SELF_MASK if u in alive else m.KEY_SHARE) for u in self.accepted[client]}
            if {u: share[0] for u, share in shares.items()} != expected:
                raise ProtocolIntegrityError()
            return shares

        responses = self._parse_each(messages, parse, self.alive)
        self._need(responses, "unmask")
        shares_of: dict[int, dict[int, tuple]] = {}  # owner -> holder -> (kind, elements, digest, sig): O(n k)
        for holder, shares in responses.items():
            for owner, share in shares.items():
                shares_of.setdefault(owner, {})[holder] = share
        survivors = set(self.survivors)
        self.masked_with: dict[int, list[int]] = {}  # dropped client -> the survivors that masked with it
        for u in self.survivors:
            for v in self.masked[u][1] - survivors:
                self.masked_with.setdefault(v, []).append(u)
        self.secrets: dict[int, bytes] = {}
        self.convicted: dict[int, tuple[int, dict]] = {}
        for owner in [*self.survivors, *sorted(self.masked_with)]:
            kind = m.SELF_MASK if owner in survivors else m.KEY_SHARE
            entry = self.keys[owner]
            check = ((lambda seed, e=entry: commit(seed) == e.commitment) if kind == m.SELF_MASK
                     else (lambda key, e=entry: crypto.x25519_public(key) == e.s_public))
            held = {h: share for h, share in shares_of.get(owner, {}).items() if share[0] == kind}
            secret = self._reconstruct(owner, kind, held, check)
            if secret is not None:
                self.secrets[owner] = secret
        # a convicted dealer's pairwise keys come from the survivors that masked with it
        self.awaiting = {u: sorted(w for w in self.convicted if w in self.masked[u][1]) for u in self.survivors}
        self.awaiting = {u: owners for u, owners in self.awaiting.items() if owners}
        requests = {}
        for u, owners in self.awaiting.items():
            body = Writer().u32(len(owners))
            for w in owners:
                kind, proof = self.convicted[w]
                m.write_conviction(body, w, kind, proof)
            requests[u] = m.encode(m.CONVICTION, self._to(u), body)
        return requests

    def receive_pair_keys(self, messages: Mapping[int, object]) -> np.ndarray:
        """The pairwise keys with convicted dealers (if any were asked for); return the sum."""
        def parse(client, data):
            reader = self._open(client, data, m.PAIR_KEYS)
            count = reader.count(item_size=4 + m.KEY_BYTES, max_count=self.params.neighbours)
            keys = {reader.u32(): reader.raw(m.KEY_BYTES) for _ in range(count)}
            reader.done()
            if sorted(keys) != self.awaiting[client] or len(keys) != count:
                raise ProtocolIntegrityError()
            return keys

        pair_keys = self._parse_each(messages, parse, self.awaiting)
        if set(pair_keys) != set(self.awaiting):  # a key we need went missing: no exact sum is possible
            raise InsufficientParticipantsError(
                f"group {self.instance.group}: {len(self.awaiting) - len(pair_keys)} clients that masked with a "
                "convicted dealer did not send the pairwise key")
        survivors = [u for u in self.survivors if u not in self.convicted]
        self._need(survivors, "convict")
        self.survivors = tuple(survivors)
        total = np.zeros(self.length, dtype=self.dtype)
        for u in self.survivors:
            np.add(total, self.masked[u][0], out=total)  # wraps mod 2^32 / 2^64, in place
            prg.add_mask(total, crypto.derive(self.secrets[u], info=self_mask_info(self.digest, u)), sign=-1)
        for u, keys in pair_keys.items():
            if u in self.convicted:
                continue
            for w, key in keys.items():
                prg.add_mask(total, key, sign=-1 if u < w else 1)  # remove what u added for w
        for v in sorted(self.masked_with):
            if v in self.convicted:
                continue
            for u in sorted(self.masked_with[v]):
                if u in self.convicted:
                    continue
                key = crypto.agree(self.secrets[v], self.keys[u].s_public,
                                   info=pair_info("secagg-mask", self.digest, u, v))
                prg.add_mask(total, key, sign=-1 if u < v else 1)  # remove what u added
        return total

    def _reconstruct(self, owner: int, kind: int, held: Mapping[int, tuple], check) -> bytes | None:
        """The secret of ``owner`` from the shares its holders revealed; None if ``owner`` is convicted."""
        holders = sorted(held)
        if len(holders) < self.params.threshold:
            raise InsufficientParticipantsError(
                f"group {self.instance.group}: {len(holders)} shares of a secret, threshold is {self.params.threshold}")
        shares = np.stack([held[h][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        try:
            elements, liars = shamir.combine_robust([h + 1 for h in holders], shares, threshold=self.params.threshold,
                                                    check=lambda e: check(shamir.decode_secret(e[0])))
            for holder in (x - 1 for x in liars):  # off the polynomial: altered by the holder, or dealt so
                _, share, other, signature = held[holder]
                try:
                    crypto.verify(self.directory.public_key(owner), signature,
                                  share_message(self.digest, owner, holder, signed_digests(kind, share, other)))
                    self.rejected.add(owner)  # the dealer signed a share off its own polynomial
                except ProtocolError:
                    self.rejected.add(holder)  # the holder altered what the dealer signed
            return shamir.decode_secret(elements[0])
        except ProtocolIntegrityError:
            pass
        # slow path: keep the shares the dealer signed (a holder cannot alter one), then judge the dealer
        public = self.directory.public_key(owner)
        signed = {}
        for h in holders:
            _, elements, other, signature = held[h]
            try:
                crypto.verify(public, signature, share_message(self.digest, owner, h, signed_digests(kind, elements, other)))
                signed[h] = (elements, other, signature)
            except ProtocolError:
                self.rejected.add(h)  # a holder that altered its share
        if dealer_cheated(self.digest, self.keys[owner], kind, signed, self.params.threshold, self.directory):
            self.convicted[owner] = (kind, signed)
            self.rejected.add(owner)
            return None
        if len(signed) < self.params.threshold:
            raise InsufficientParticipantsError(
                f"group {self.instance.group}: {len(signed)} authentic shares of a secret, threshold is "
                f"{self.params.threshold}")
        stacked = np.stack([signed[h][0] for h in sorted(signed)]).reshape(len(signed), 1, m.SHARE_WORDS)
        elements = shamir.combine([h + 1 for h in sorted(signed)], stacked, threshold=self.params.threshold)
        return shamir.decode_secret(elements[0])
