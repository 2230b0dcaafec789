"""SecAgg / SecAgg+ attempts with malformed or non-bytes messages and with too few honest clients.

Threat model: any message may be garbage: truncated, padded, mistyped, oversized, with a huge item
count, or not bytes at all (None, int, str, list, a non-contiguous memoryview). A client given
such a message from the server must raise ``MalformedMessageError`` (never ``TypeError`` or a
hang); the server given one from a client must exclude that client and still release the exact
sum of the others. A malicious server may also claim that fewer than t clients remain, or isolate
one client in the sparse graph: no sum over fewer than t inputs, and no input alone, may result.
Each function returns an ``Attempt``.
"""

from __future__ import annotations

import copy

import numpy as np

from secfl.audit.protocol.base import Attempt, attempt, decisive, decisively, refusals
from secfl.audit.protocol.harness import (D, Group, Round, deals_badly, excluded, ids_message, keys_message,
                                            read_keys, secagg_protocol, signature_of, statements_message)
from secfl.exceptions import SecflError
from secfl.hazmat import shamir, wire
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES, SecAggClient, commit
from secfl.types import Update

H = m.HEADER_BYTES


def strided(data: bytes) -> memoryview:
    """A non-contiguous memoryview with the bytes of ``data`` (every other byte of a buffer twice as long)."""
    return memoryview(bytes(b for x in data for b in (x, 0)))[::2]


def garbage(message: bytes, kind: int, cap: int) -> list[tuple[str, object]]:
    """Malformed versions of an honest message of ``kind`` (each must raise MalformedMessageError)."""
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
        ("huge item count", wire.frame(kind, payload[:H] + (0xFFFFFFFF).to_bytes(4, "little") + payload[H + 4:])),
        ("oversized", wire.frame(kind, payload + bytes(cap))),
        ("header only", wire.frame(kind, payload[:H])),
        ("None", None),
        ("str", message.decode("latin-1")),
        ("int", 42),
        ("list", [message]),
        ("non-contiguous memoryview, truncated", strided(message[:-1])),
    ]


# Malformed messages to a client ---------------------------------------------------------------------------

KIND = {"share_keys": m.KEYS, "check_shares": m.CIPHERTEXTS, "masked_input": m.QUALIFIED,
        "consistency_check": m.SURVIVORS, "unmask": m.UNMASK_REQUEST, "convict": m.CONVICTION}


def malformed_to_client(p: str, stage: str) -> Attempt:
    previous = STAGES[STAGES.index(stage) - 1]

    def go():
        rnd = Round(p)
        # CONVICTION is sent only when a dealer cheated: a neighbour of client 0 deals shares of another seed
        tamper = deals_badly(rnd, min(rnd.neighbours(0)), "seed") if stage == "convict" else None
        rnd.run(tamper, halt=(previous, "down"))
        honest, client = rnd.log[previous, "down"][0], rnd.clients[0]
        calls = [(label, lambda bad=bad: decisively(getattr(SecAggClient, stage), copy.deepcopy(client), bad))
                 for label, bad in garbage(honest, KIND[stage], client.cap)]
        return refusals(calls)

    return attempt(f"malformed-{stage.replace('_', '-')}", p, f"Truncated, padded, mistyped, oversized, huge-count "
                   f"and non-bytes versions of the server's message at {stage} (16 variants, a fresh client each).", go)


# Malformed messages to the server: the faulty client is excluded, the others summed ----------------------

SERVER_KIND = {"advertise_keys": m.ADVERTISE, "share_keys": m.SHARES, "check_shares": m.ACCEPTED,
               "masked_input": m.MASKED, "consistency_check": m.CONSISTENCY, "unmask": m.UNMASK}


def _server_variants(message: bytes, earlier: bytes | None) -> dict[str, object]:
    out = {"truncated": message[:-3], "None": None, "int": 7, "str": "secagg", "list": [message],
           "non-contiguous memoryview, truncated": strided(message[:-3])}
    if earlier is not None:
        out["the previous stage's message"] = earlier
    return out


def _to_server(p: str, *, stage: str, label: str, cheat: int = 2) -> str:
    rnd = Round(p)
    index = STAGES.index(stage)

    def tamper(s, direction, messages):
        if (s, direction) == (stage, "up"):
            earlier = rnd.log[STAGES[index - 1], "up"][cheat] if index else None
            messages = {**messages, cheat: _server_variants(messages[cheat], earlier)[label]}
        return messages

    counted = index >= STAGES.index("consistency_check")  # its masked input is already in the sum
    return excluded(rnd, lambda: rnd.run(tamper), cheat, f"client {cheat}'s {label} message at {stage}",
                    counted=counted)


def malformed_to_server(p: str, *, non_bytes: bool) -> Attempt:
    labels = ["None", "int", "str", "list", "non-contiguous memoryview, truncated"] if non_bytes \
        else ["truncated", "the previous stage's message"]

    def go():  # not at convict: nobody is asked then unless a dealer cheated (and a silent survivor aborts)
        return refusals([(f"{label} at {stage}", lambda stage=stage, label=label: _to_server(p, stage=stage,
                                                                                               label=label))
                         for stage in STAGES[:-1] for label in labels
                         if not (stage == STAGES[0] and label == "the previous stage's message")])

    name = "non-bytes-to-server" if non_bytes else "malformed-to-server"
    what = ("None, an int, a str, a list or a non-contiguous memoryview" if non_bytes
            else "a truncated message, or its message of the previous stage")
    return attempt(name, p, f"A faulty client sends {what} at each stage: the server must exclude it (never crash) "
                   "and still release the exact sum of the others.", go)


# Too few honest clients ----------------------------------------------------------------------------------

def too_few_keys(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("advertise_keys", "down"))
        entries = read_keys(rnd.log["advertise_keys", "down"][0])[:1]
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd.to(0), entries))
        return "client 0 shared its secrets with a single neighbour"

    return attempt("group-of-two-keys", p, "The server tells client 0 its only neighbour is one other client (so a "
                   "'sum' would reveal the other's input).", go)


def too_few_qualified(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("check_shares", "down"))
        with decisive():
            rnd.clients[0].masked_input(ids_message(m.QUALIFIED, rnd.to(0), sorted(rnd.neighbours(0))[: rnd.t - 1]))
        return "client 0 masked its input with fewer than t neighbours"

    return attempt("too-few-qualified-neighbours", p, "The server tells client 0 that only t - 1 neighbours "
                   "qualified (their shares arrived).", go)


def too_few_survivors(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("masked_input", "down"))
        claimed = {0, *sorted(rnd.neighbours(0))[: rnd.t - 2]}  # t - 1 'survivors'
        statements = {}
        for c in sorted(claimed):
            alive = tuple(sorted((claimed - {c}) & rnd.neighbours(c)))
            statements[c] = (alive, signature_of(rnd.clients[c].consistency_check(ids_message(m.SURVIVORS, rnd.to(c),
                                                                                                alive))))
        with decisive():
            rnd.clients[0].unmask(statements_message(rnd.to(0), {c: s for c, s in statements.items() if c != 0}))
        return "client 0's shares for a sum over t - 1 survivors"

    return attempt("too-few-survivors", p, "The server claims only t - 1 clients survived (a sum over fewer than t) "
                   "and asks client 0 to unmask on their statements.", go)


def unmask_below_threshold(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        victim = 0
        holders = sorted(rnd.group.server(rnd.instance).graph[victim])[: rnd.t - 1]

        def tamper(stage, direction, messages):
            return {c: a for c, a in messages.items() if c in holders} if (stage, direction) == ("unmask", "up") \
                else messages

        rnd.run(tamper, halt=("unmask", "up"))
        answers = rnd.log["unmask", "up"]
        revealed = rnd.shares_of(answers)
        stacked = np.stack([revealed[h][victim][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        try:  # interpolate as if t - 1 shares sufficed
            guess = shamir.decode_secret(shamir.combine([h + 1 for h in holders], stacked, threshold=len(holders))[0])
        except SecflError:
            guess = b""
        if guess and commit(guess) == rnd.server.keys[victim].commitment:
            return f"client {victim}'s self-mask seed from t - 1 shares"
        with decisive():  # the honest server code on the same t - 1 answers
            rnd.server.receive_unmask(answers)
        return "a sum unmasked from t - 1 answers"

    return attempt("unmask-below-threshold", p, "Only t - 1 clients answer the unmasking; the server interpolates a "
                   "self-mask seed from t - 1 shares, then runs its unmasking.", go)


def group_below_minimum(p: str) -> Attempt:
    def go():
        ups = [Update(c, np.arange(D, dtype=np.uint32) + c) for c in range(2)]
        with decisive():
            result = secagg_protocol(p).run(ups, groups=[[0, 1]])
        return f"a 'sum' of 2 inputs, i.e. each one given the other: {result.sums[0][:2]}..."

    return attempt("group-below-minimum", p, "The server forms a group of 2 clients (each learns the other's input "
                   "from the sum).", go)


def isolate_in_sparse_graph(p: str) -> Attempt:
    def go():
        rnd, target = Round(Group(p)), 0
        cut: set[int] = set()

        def tamper(stage, direction, messages):
            if (stage, direction) == ("masked_input", "up"):  # the server ignores the neighbours' uploads
                cut.update(rnd.neighbours(target))
                messages = {c: u for c, u in messages.items() if c not in cut}
            return messages

        try:
            rnd.run(tamper)
        except Exception as error:  # noqa: BLE001 - the attacker's view is checked first, then the refusal
            failure = error
        else:
            return "the honest server unmasked a sum with client 0 cut off from its neighbours"
        revealed = rnd.shares_of(rnd.log.get(("unmask", "up"), {}))
        upload = rnd.log["masked_input", "up"][target]
        pair = {}
        for v in cut:  # the neighbours' mask keys the attacker can reconstruct from their key shares
            try:
                pair[v] = rnd.pair_key(target, v, rnd.secret(revealed, v, m.KEY_SHARE), owner=v)
            except Exception:  # noqa: BLE001 - not enough shares of that key
                continue
        leak = rnd.leak(target, rnd.strip(upload, target, None, pair))  # at best x + PRG(b)
        if leak:
            return leak
        with decisive():
            raise failure
        return "unreachable"

    return attempt("isolate-in-sparse-graph", p, "The server ignores the uploads of every neighbour of client 0 in "
                   "the sparse graph, reconstructs their mask keys, and tries to unmask client 0 alone.", go)

