"""The server state machine of SecAgg/SecAgg+ for one group in one round.

Threat model: this is the party the protocol protects against; its code is honest but it only ever
holds what clients send (``received``). It learns the sum over the survivors U3, their ids, and
nothing about an individual input. A client whose message does not parse or verify is treated as
dropped from that stage on (one faulty client cannot abort the round); too few survivors at any
stage raises ``InsufficientParticipantsError``: the round aborts rather than release a sum of
fewer than t inputs. Reconstructed secrets are checked (extra shares must agree, a key share must
match the signed public key), so a bad share gives ``ProtocolIntegrityError``, never a wrong sum.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from secfl.exceptions import InsufficientParticipantsError, ProtocolError, ProtocolIntegrityError
from secfl.hazmat import crypto, prg, shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_client import (
    advertise_message, commit, consistency_message, max_message_bytes, pair_info, self_mask_info,
)
from secfl.protocols.secagg_params import SecAggParams, graph_seed, neighbours_of


class SecAggServer:
    """Drive one group's round: each ``receive_*`` takes the clients' messages and returns the replies."""

    def __init__(self, *, header: m.Header, members: list[int], params: SecAggParams, directory: KeyDirectory,
                 length: int, dtype: np.dtype) -> None:
        self.ctx = m.Header(header.session, header.round, header.group, m.SERVER, m.SERVER)
        self.members, self.params, self.directory = frozenset(members), params, directory
        self.length, self.dtype = length, np.dtype(dtype)
        self.cap = max_message_bytes(params.n, length, self.dtype.itemsize)
        self.received: dict[int, list[bytes]] = {}
        self.rejected: set[int] = set()

    def _open(self, client: int, data: bytes, kind: int):
        self.received.setdefault(client, []).append(bytes(data))
        expect = m.Header(self.ctx.session, self.ctx.round, self.ctx.group, client, m.SERVER)
        return m.open_message(data, kind=kind, expect=expect, max_bytes=self.cap)

    def _parse_each(self, messages: Mapping[int, bytes], parse) -> dict:
        out = {}
        for client in sorted(messages):
            if client not in self.members:
                continue
            try:
                out[client] = parse(client, messages[client])
            except ProtocolError:  # malformed or failed integrity: this client counts as dropped
                self.rejected.add(client)
        return out

    def _need(self, alive, stage: str, need: int | None = None) -> None:
        need = self.params.threshold if need is None else need
        if len(alive) < need:
            raise InsufficientParticipantsError(
                f"group {self.ctx.group}: {len(alive)} clients left at {stage}, {need} needed"
            )

    def _to(self, client: int) -> m.Header:
        return m.Header(self.ctx.session, self.ctx.round, self.ctx.group, m.SERVER, client)

    def receive_advertise(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        def parse(client, data):
            reader = self._open(client, data, m.ADVERTISE)
            entry = m.read_entry(reader, client=reader.u32())
            reader.done()
            if entry.client != client:
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(client), entry.signature, advertise_message(self.ctx, entry))
            return entry

        self.keys = self._parse_each(messages, parse)
        self._need(self.keys, "advertise_keys")
        body = Writer().u32(len(self.keys))
        for client in sorted(self.keys):
            m.write_entry(body, self.keys[client])
        seed = graph_seed(self.ctx.session, self.ctx.round, self.ctx.group,
                          [(e.client, e.c_public, e.s_public) for e in self.keys.values()])
        self.graph = neighbours_of(list(self.keys), self.params.neighbours, seed)
        return {c: m.encode(m.KEYS, self._to(c), body) for c in self.keys}

    def receive_shares(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        def parse(client, data):
            reader = self._open(client, data, m.SHARES)
            blobs = m.read_blobs(reader, max_count=self.params.n, blob_size=m.SHARE_CIPHERTEXT)
            reader.done()
            if client not in self.keys or set(blobs) != set(self.graph[client]):
                raise ProtocolIntegrityError()
            return blobs

        sent = self._parse_each(messages, parse)
        self._need(sent, "share_keys")
        self.shared_with = {v: frozenset(u for u in self.graph[v] if u in sent) for v in sent}
        return {
            v: m.encode(m.CIPHERTEXTS, self._to(v), m.write_blobs(Writer(), {u: sent[u][v] for u in self.shared_with[v]}))
            for v in sent
        }

    def receive_masked(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        def parse(client, data):
            reader = self._open(client, data, m.MASKED)
            words = reader.words(length=self.length, itemsize=self.dtype.itemsize)
            reader.done()
            if client not in self.shared_with:
                raise ProtocolIntegrityError()
            return words

        self.masked = self._parse_each(messages, parse)
        self._need(self.masked, "masked_input")
        self.survivors = tuple(sorted(self.masked))
        body = Writer().ids(self.survivors)
        return {c: m.encode(m.SURVIVORS, self._to(c), body) for c in self.survivors}

    def receive_consistency(self, messages: Mapping[int, bytes]) -> dict[int, bytes]:
        statement = consistency_message(self.ctx, self.survivors)

        def parse(client, data):
            reader = self._open(client, data, m.CONSISTENCY)
            signature = reader.raw(m.SIG_BYTES)
            reader.done()
            if client not in self.masked:
                raise ProtocolIntegrityError()
            crypto.verify(self.directory.public_key(client), signature, statement)
            return signature

        signatures = self._parse_each(messages, parse)
        self._need(signatures, "consistency_check", self.params.quorum)  # clients refuse to unmask below it
        survivors = set(self.survivors)
        replies = {}
        for c in signatures:
            dropped = sorted(self.shared_with[c] - survivors)
            body = Writer().ids(self.survivors).ids(dropped).u32(len(signatures))
            for signer in sorted(signatures):
                body.u32(signer).raw(signatures[signer])
            replies[c] = m.encode(m.UNMASK_REQUEST, self._to(c), body)
        return replies

    def receive_unmask(self, messages: Mapping[int, bytes]) -> np.ndarray:
        """Reconstruct the self masks of survivors and the keys of those who dropped; return the sum."""
        def parse(client, data):
            reader = self._open(client, data, m.UNMASK)
            shares = m.read_shares(reader, max_count=self.params.n)
            reader.done()
            survivors = set(self.survivors)
            expected = {u: (m.SELF_MASK if u in survivors else m.KEY_SHARE) for u in self.shared_with.get(client, ())}
            if client not in self.masked or {u: kind for u, (kind, _) in shares.items()} != expected:
                raise ProtocolIntegrityError()
            return shares

        responses = self._parse_each(messages, parse)
        self._need(responses, "unmask")
        total = self.masked[self.survivors[0]].copy()
        for c in self.survivors[1:]:
            np.add(total, self.masked[c], out=total)  # wraps mod 2^32 / 2^64, in place
        for u in self.survivors:
            b_seed = shamir.decode_secret(self._reconstruct(u, responses))
            if commit(b_seed) != self.keys[u].commitment:
                raise ProtocolIntegrityError()
            prg.add_mask(total, crypto.derive(b_seed, info=self_mask_info(self.ctx, u)), sign=-1)
        survivors = set(self.survivors)
        for v in sorted(set(self.shared_with) - survivors):
            s_sk = shamir.decode_secret(self._reconstruct(v, responses))
            if crypto.x25519_public(s_sk) != self.keys[v].s_public:
                raise ProtocolIntegrityError()
            for u in sorted(self.shared_with[v] & survivors):
                key = crypto.agree(s_sk, self.keys[u].s_public, info=pair_info("secagg-mask", self.ctx, u, v))
                prg.add_mask(total, key, sign=-1 if u < v else 1)  # remove what u added
        return total

    def _reconstruct(self, client: int, responses: Mapping[int, dict]) -> np.ndarray:
        holders = sorted(h for h in responses if client in responses[h])
        if len(holders) < self.params.threshold:
            raise InsufficientParticipantsError(
                f"group {self.ctx.group}: {len(holders)} shares of a secret, threshold is {self.params.threshold}"
            )
        shares = np.stack([responses[h][client][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        return shamir.combine([h + 1 for h in holders], shares, threshold=self.params.threshold)[0]
