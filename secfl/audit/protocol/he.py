"""The HE attack attempts of ``secfl.audit.protocol.run``: ``HeClient``, ``HeAggregator`` and ``KeyHolder`` driven
through ``HeRound`` (``he`` = HeSum BFV with 20-bit words, vectors of 16 words). Each function returns an
``Attempt``; the registry is in ``cases.py``.

Threat model (protocols/he_sum/SPEC.md): outsiders and the network against the aggregator and the
clients; towards the key holder, a *malicious* aggregator that writes every byte of the SUM
messages it sends (it holds the uploads it received but no client's signing key). Every attempt is
in scope: the key holder decrypts only a sum it computes itself from at least ``min_contributors``
distinct uploads signed for that round and group, each client counting once per round.
"""

from __future__ import annotations

import os

import numpy as np

from secfl.audit.protocol.base import Attempt, attempt, decisive, decisively, flip_bit, refusals
from secfl.hazmat import crypto, ring, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols import he_messages as hm
from secfl.protocols import he_sandbox
from secfl.protocols.he import HeSum
from secfl.protocols.he_params import new_context
from secfl.protocols.he_roles import HeAggregator, HeClient
from secfl.types import DropoutSchedule, Update


class HeRound:
    """The three HE roles of one round, driven by hand (d = 16 words of 20 bits)."""

    def __init__(self, he: HeSum | None = None, *, d: int = 16, groups: int = 2) -> None:
        self.he = he or HeSum(bits=20)
        self.d, self.round_id = d, os.urandom(hm.ROUND_ID_BYTES)
        self.context = self.he.key_holder.open_round(self.round_id, groups=groups, d=d)
        self.aggregator = HeAggregator(self.he.parameters, round_id=self.round_id, context_message=self.context,
                                       key_holder=self.he.key_holder_public, directory=self.he.directory, d=d)

    def client(self, cid: int, round_id: bytes | None = None, group: int = 0) -> HeClient:
        return HeClient(cid, params=self.he.parameters, signing_key=self.he.identity(cid),
                        key_holder=self.he.key_holder_public, round_id=round_id or self.round_id, group=group,
                        group_size=3, bits=self.he.bits)

    def values(self, cid: int) -> np.ndarray:
        return (np.arange(self.d, dtype=np.uint32) * np.uint32(cid + 3) + np.uint32(cid)) % np.uint32(1 << 20)

    def upload(self, cid: int, group: int = 0) -> bytes:
        return self.client(cid, group=group).upload(self.context, self.values(cid))

    def ask(self, group: int, uploads: list[bytes]) -> str:
        """The malicious aggregator's SUM of ``uploads`` for ``group``, sent to the key holder (the decisive step)."""
        request = hm.encode_sum(self.round_id, group, self.aggregator.digest, self.d, uploads)
        got = self.aggregator.open_result(group, decisively(self.he.key_holder.decrypt, request))
        if np.array_equal(got, ring.lift(self.values(0), 20)):
            return "client 0's individual input"
        return f"a decryption of {got[:3]}..."


def _upload_fields(message: bytes):
    reader = Reader(wire.unframe(message, kind=hm.UPLOAD))
    return (reader.raw(16), reader.u32(), reader.u32(), reader.raw(32), reader.u32(), reader.blob(max_size=1 << 30),
            reader.blob(max_size=1 << 10))


def he_tampered_upload(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        upload = rnd.upload(0)
        with decisive():
            rnd.aggregator.accept(0, flip_bit(upload, len(upload) // 2))
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
        single = hm.encode_sum(rnd.round_id, 0, rnd.aggregator.digest, rnd.d, [rnd.upload(0)])
        with decisive():
            reply = rnd.he.key_holder.decrypt(single)
        return f"client 0's input: {rnd.aggregator.open_result(0, reply)[:3]}..."

    return attempt("second-decryption-single-upload", p, "After the genuine group sum, the aggregator asks the key "
                   "holder to decrypt one client's ciphertext as the same group's sum.", go)


def he_sum_other_round(p: str) -> Attempt:
    def go():
        old = HeRound()
        request = old.aggregator.sum_group(0, {0: old.upload(0), 1: old.upload(1)})
        new = HeRound(old.he)
        with decisive():
            new.he.key_holder.decrypt(request)
        return "a decryption of the previous round's ciphertext"

    return attempt("sum-from-earlier-round", p, "The aggregator asks the key holder to decrypt a ciphertext of the "
                   "previous round.", go)


def he_sum_after_close(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        request = rnd.aggregator.sum_group(1, {0: rnd.upload(0, 1), 1: rnd.upload(1, 1)})
        rnd.he.key_holder.close_round()
        with decisive():
            rnd.he.key_holder.decrypt(request)
        return "a decryption after the round closed"

    return attempt("sum-after-round-closed", p, "The aggregator asks for a decryption after the round closed.", go)


def he_malformed_upload(p: str) -> Attempt:
    def go():
        rnd = HeRound()
        honest = rnd.upload(0)
        r, g, c, fp, d, vector, signature = _upload_fields(honest)

        def rebuild(vec: bytes) -> bytes:
            body = Writer().raw(r).u32(g).u32(c).raw(fp).u32(d).blob(vec).blob(signature)
            return wire.frame(hm.UPLOAD, body.payload())

        variants = [("empty", b""), ("truncated", honest[: len(honest) // 2]), ("trailing", honest + b"\x00"),
                    ("bare vector", vector), ("wrong kind", wire.frame(hm.SUM, honest[8:])),
                    ("huge declared length", honest[:4] + (0xFFFFFFFF).to_bytes(4, "little") + honest[8:]),
                    ("empty vector", rebuild(b"")), ("oversized vector", rebuild(vector * 2)),
                    ("None", None), ("str", "upload")]
        return refusals([(label, lambda bad=bad: decisively(rnd.aggregator.accept, 0, bad))
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
        return refusals([(label, lambda bad=bad: decisively(rnd.he.key_holder.decrypt, bad))
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
        he_sandbox.start()  # the parsing worker's server, started once, outside the timed variants
        old = HeRound()
        stale = old.upload(1)
        forger, _ = crypto.ed25519_keypair()  # the aggregator's own key: it holds no client's

        def variant(build):
            def call():
                rnd = HeRound(old.he)  # a fresh round each: a refused SUM uses up its group
                return rnd.ask(0, build(rnd))
            return call

        def forged(rnd: HeRound, cid: int, signature: bytes | None = None) -> bytes:
            r, g, _, fp, d, vector, _ = _upload_fields(rnd.upload(0))
            signature = crypto.sign(forger, hm.upload_statement(r, g, cid, fp, d, vector)) if signature is None \
                else signature
            return wire.frame(hm.UPLOAD, Writer().raw(r).u32(g).u32(cid).raw(fp).u32(d).blob(vector)
                              .blob(signature).payload())

        def reused(rnd: HeRound) -> list[bytes]:  # client 0 already counted in group 1's sum
            rnd.he.key_holder.decrypt(rnd.aggregator.sum_group(1, {0: rnd.upload(0, 1), 1: rnd.upload(1, 1)}))
            return [rnd.upload(0), rnd.upload(2)]

        variants = [
            ("one upload as a sum", lambda rnd: [rnd.upload(0)]),
            ("one upload three times", lambda rnd: [rnd.upload(0)] * 3),
            ("plus another group's upload", lambda rnd: [rnd.upload(0), rnd.upload(1, 1)]),
            ("plus an earlier round's upload", lambda rnd: [rnd.upload(0), stale]),
            ("plus client 0's ciphertext signed by the aggregator as client 1's", lambda rnd: [
                rnd.upload(0), forged(rnd, 1)]),
            ("plus an unsigned upload", lambda rnd: [rnd.upload(0), forged(rnd, 1, b"")]),
            ("plus a client outside the directory", lambda rnd: [rnd.upload(0), forged(rnd, 99)]),
            ("plus a client already counted in another group", reused),
        ]
        return refusals([(label, variant(build)) for label, build in variants])

    return attempt("single-upload-as-sum", p, "A MALICIOUS aggregator asks the key holder to decrypt one client's "
                   "upload as a group sum: alone, repeated, or padded with another group's or round's upload, a "
                   "forged, unsigned or unregistered one, or a client already counted (8 variants).", go)
