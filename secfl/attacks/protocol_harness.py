"""The SecAgg / SecAgg+ harness of the protocol attacks: an honest round driven stage by stage (``SecAggRound``).

Configurations: ``secagg`` = SecAgg (complete graph) over 5 clients (k = 4, t = 3); ``secagg+`` =
SecAggPlus(neighbours=4) over 9 clients (a sparse Harary graph, k = 4, t = 3); vectors of 8 words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import hashlib
import os

import numpy as np

from secfl.exceptions import InsufficientParticipantsError, ProtocolError, SecflError
from secfl.hazmat import crypto, prg, shamir, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient, pair_info, self_mask_info
from secfl.protocols.secagg_params import graph_seed
from secfl.protocols.secagg_server import SecAggServer


HEADER = m.SESSION_BYTES + 8 + 4 + 4 + 4  # session, round, group, sender, recipient
GROUP = {"secagg": 5, "secagg+": 9}


def secagg_protocol(name: str) -> SecAggPlus:
    return SecAgg() if name == "secagg" else SecAggPlus(neighbours=4, dropout_rate=0.0)


def message_body(message: bytes, kind: int) -> Reader:
    reader = Reader(wire.unframe(message, kind=kind))
    reader.raw(HEADER)
    return reader


# SecAgg harness ---------------------------------------------------------------------------------

class SecAggRound:
    """One group's round with honest clients, stepped by hand so an attacker can act between stages."""

    def __init__(self, name: str, *, n: int | None = None, d: int = 8, protocol: SecAggPlus | None = None,
                 session: bytes | None = None, round_: int = 1, group: int = 0, advertise: bool = True) -> None:
        self.protocol = protocol or secagg_protocol(name)
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
            out[c] = message_body(reply, m.CONSISTENCY).raw(m.SIG_BYTES)
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
        reader = message_body(self.clients[c].unmask(self.request(c, survivors, dropped, signatures)), m.UNMASK)
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
        y = message_body(self.uploads[u], m.MASKED).words(length=self.inputs[u].size, itemsize=4).copy()
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


def everyone_signs(rnd: SecAggRound) -> tuple[list[int], dict[int, bytes]]:
    everyone = sorted(rnd.clients)
    return everyone, rnd.sign({c: everyone for c in everyone})

def refuse(step: Callable, message: bytes) -> None:
    """The set-up step of ``continue_after_refusal``: the client must refuse it (else the set-up failed)."""
    try:
        step(message)
    except ProtocolError:
        return
    raise SetupFailed("the client accepted the message it should refuse")


class SetupFailed(SecflError):
    """The attack could not be set up as intended (reported as not refused, never as a refusal)."""

def share_blobs(message: bytes, n: int) -> dict[int, bytes]:
    reader = message_body(message, m.CIPHERTEXTS)
    return m.read_blobs(reader, max_count=n, blob_size=m.SHARE_CIPHERTEXT)

def key_entries(rnd: SecAggRound) -> list[m.KeyEntry]:
    reader = message_body(rnd.keys[0], m.KEYS)
    return [m.read_entry(reader) for _ in range(reader.u32())]

def keys_message(rnd: SecAggRound, entries: Sequence[m.KeyEntry]) -> bytes:
    body = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(body, entry)
    return m.encode(m.KEYS, rnd.to(0), body)
