"""SecAgg / SecAgg+ attempts with malformed messages and too few honest clients (each returns an ``Attempt``)."""

from __future__ import annotations

from collections.abc import Callable
import copy

import numpy as np

from secfl.attacks.protocol import Attempt, attempt, decisive, decisively, refusals
from secfl.attacks.protocol_harness import (HEADER, SecAggRound, everyone_signs, key_entries, keys_message,
                                            message_body, secagg_protocol, share_blobs)
from secfl.exceptions import InsufficientParticipantsError, SecflError
from secfl.hazmat import shamir, wire
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient, commit
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import Update


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
        calls = [(label, lambda bad=bad: decisively(step, copy.deepcopy(rnd.clients[0]), bad))
                 for label, bad in _garbage(honest, kind, rnd.clients[0].cap)]
        return refusals(calls)

    return attempt(f"malformed-{stage.replace('_', '-')}", p, f"Truncated, padded, mistyped, oversized and huge-count "
                   f"versions of the server's message at stage {stage} (15 variants, one fresh client each).", go)


def _at_unmask(rnd: SecAggRound) -> bytes:
    rnd.shares().masked()
    everyone, signatures = everyone_signs(rnd)
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
        entries = [e for e in key_entries(rnd) if e.client in (0, min(rnd.graph[0]))]
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd, entries))
        return "client 0 shared its secrets in a group of 2"

    return attempt("group-of-two-keys", p, "The server tells client 0 the group is itself and one other client "
                   "(so a 'sum' would reveal the other's input).", go)


def too_few_ciphertexts(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        blobs = dict(sorted(share_blobs(rnd.ciphertexts[0], rnd.n).items())[: rnd.t - 1])
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
        revealed = {c: m.read_shares(message_body(a, m.UNMASK), max_count=rnd.n) for c, a in answers.items()}
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
            result = secagg_protocol(p).run(ups, groups=[[0, 1]])
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
        revealed = {c: m.read_shares(message_body(a, m.UNMASK), max_count=rnd.n) for c, a in answers.items()}
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
