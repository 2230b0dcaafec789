"""Build the SecAgg known-answer vectors (explicit deterministic test mode) and write them to protocols/.

    .venv/bin/python tests/vectors/secagg_vectors.py      # rewrite protocols/secagg/vectors/*.json

Each case is one bound instance (session, round 1, group 0, roster) run by the shared in-process
driver ``secagg_round.run_instance`` between the parties ``SecAggPlus.clients`` / ``.server`` build,
exactly as ``SecAggPlus.run`` does. The test randomness is consumed in the order of SPEC.md, "Test
mode": the protocol's 16-byte simulation id (at construction), the session id, then per client in
roster order its long-term key (first use) followed by its round keys c, s and self-mask seed b;
then the stages in order, clients in roster order. The server's throwaway probe key (used only to
expose low-order points, never sent) comes from the OS and does not touch the test stream.

``down[stage]`` holds the server messages the clients consume at ``stage`` (KEYS at share_keys,
CIPHERTEXTS at check_shares, QUALIFIED at masked_input, SURVIVORS at consistency_check,
UNMASK_REQUEST at unmask, CONVICTION at convict: empty unless a dealer cheated); ``up[stage]`` the
clients' messages of ``stage``.

A case may list ``cheats`` {client: how}: that client, once its advertisement is out, deals shares
of another self-mask seed than the one it committed to ("seed"; the seed is a fixed digest, so the
test stream is consumed as in an honest run). The server convicts it and the survivors that masked
with it answer CONVICTION with PAIR_KEYS.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from secfl.hazmat import shamir, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.hazmat.randomness import InsecureDeterministicRandomness
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES
from secfl.protocols.secagg_graph import graph
from secfl.protocols.secagg_instance import SESSION_BYTES, Instance
from secfl.protocols.secagg_round import run_instance

OUT = Path(__file__).resolve().parents[2] / "protocols" / "secagg" / "vectors"
SEED = b"secfl secagg known-answer vectors v1"
LENGTH = 5
PROTOCOLS = {"secagg": SecAgg, "secagg+": SecAggPlus}

# (id, protocol, constructor options, roster, dropouts {client: first silent stage}, cheats {client: how})
GENERATE = [
    ("secagg-4-no-dropout", "secagg", {}, (0, 1, 2, 3), {}, {}),
    ("secagg-6-drop-share-keys-and-unmask", "secagg", {}, (0, 1, 2, 3, 4, 5), {1: "share_keys", 3: "unmask"}, {}),
    ("secagg+-8-sparse-drop-masked-input", "secagg+", {"neighbours": 4, "dropout_rate": 0.0},
     (2, 3, 5, 7, 11, 13, 17, 19), {13: "masked_input"}, {}),
    ("secagg-5-convict-dealer", "secagg", {}, (0, 1, 2, 3, 4), {}, {3: "seed"}),
]
SPECS = {spec[0]: spec for spec in GENERATE}
CHEAT_SEED = hashlib.sha256(b"secfl secagg vectors: a seed other than the committed one").digest()


def protocol_of(kind: str, options: dict, randomness=None):
    return PROTOCOLS[kind](**options, randomness=randomness)


def inputs_of(roster) -> dict[int, np.ndarray]:
    return {c: (np.arange(LENGTH, dtype=np.uint32) * 1000 + c * 7 + 2**31) for c in roster}


class _Stop(Exception):
    pass


def transcript(case_id: str, stop_before: tuple[str, int] | None = None) -> dict:
    """Run one deterministic instance, recording every message; with ``stop_before = (stage, client)``
    return the live client just before it handles that stage (for the invalid cases)."""
    _, kind, options, roster, dropouts, cheats = SPECS[case_id]
    protocol = protocol_of(kind, options, InsecureDeterministicRandomness(SEED))
    inputs = inputs_of(roster)
    session = protocol.randomness.bytes(SESSION_BYTES)
    instance = Instance(session, 1, 0, roster)
    clients = protocol.clients(instance, inputs)
    server = protocol.server(instance, length=LENGTH, dtype=np.uint32)
    record: dict[str, dict] = {"up": {}, "down": {}}

    def tamper(stage: str, direction: str, messages: dict) -> dict:
        if direction == "up":
            record["up"][stage] = dict(messages)
            if stage == STAGES[0]:
                for cheat in cheats:  # its commitment is out: it now deals shares of another seed
                    clients[cheat].b_seed = CHEAT_SEED
        else:
            consumer = STAGES[STAGES.index(stage) + 1]
            record["down"][consumer] = dict(messages)
            if stop_before and stop_before[0] == consumer:
                raise _Stop
        return messages

    def dropped_by(stage: str) -> set[int]:
        return {c for c, s in dropouts.items() if STAGES.index(s) <= STAGES.index(stage)}

    try:
        total, _ = run_instance(clients, server, dropped_by=dropped_by, tamper=tamper)
    except _Stop:
        return {"client": clients[stop_before[1]], "record": record}
    params = server.params
    return {
        "protocol": kind, "options": options, "n": instance.n, "length": LENGTH, "dtype": "uint32",
        "threshold": params.threshold, "neighbours": params.neighbours,
        **instance_fields(instance),
        "graph": {str(c): sorted(v) for c, v in sorted(graph(instance, params.neighbours).items())},
        "inputs": {str(c): [int(v) for v in x] for c, x in inputs.items()},
        "dropouts": {str(c): s for c, s in dropouts.items()},
        "cheats": {str(c): how for c, how in cheats.items()},
        "convicted": sorted(server.convicted),
        "directory": {str(c): protocol.directory.public_key(c).hex() for c in roster},
        "survivors": list(server.survivors),
        "sum": [int(v) for v in total],
        "up": {stage: {str(c): msg.hex() for c, msg in msgs.items()} for stage, msgs in record["up"].items()},
        "down": {stage: {str(c): msg.hex() for c, msg in msgs.items()} for stage, msgs in record["down"].items()},
    }


def instance_fields(instance: Instance) -> dict:
    return {"session": instance.session.hex(), "round": instance.round, "group": instance.group,
            "roster": list(instance.roster), "digest": instance.digest.hex()}


def instance_of(case: dict) -> Instance:
    return Instance(bytes.fromhex(case["session"]), case["round"], case["group"], tuple(case["roster"]))


# Building invalid server messages from a transcript ----------------------------------------------

def _body(message: bytes) -> tuple[int, bytes, Reader]:
    """(kind, header bytes, a reader at the body) of a SecAgg message."""
    kind = message[3]
    payload = bytes(wire.unframe(message, kind=kind))
    return kind, payload[:m.HEADER_BYTES], Reader(payload[m.HEADER_BYTES:])


def _reframe(kind: int, head: bytes, body: Writer | bytes) -> bytes:
    return wire.frame(kind, head + (body.payload() if isinstance(body, Writer) else body))


def rehead(message: bytes, digest: bytes) -> bytes:
    """The same message under the header of another instance (digest replaced)."""
    kind = message[3]
    payload = bytes(wire.unframe(message, kind=kind))
    return wire.frame(kind, digest + payload[32:])


def entry_of(message: bytes) -> m.KeyEntry:
    return m.read_entry(_body(message)[2])


def keys_of(message: bytes) -> list[m.KeyEntry]:
    _, _, reader = _body(message)
    return [m.read_entry(reader) for _ in range(reader.u32())]


def with_keys(message: bytes, entries: list[m.KeyEntry]) -> bytes:
    kind, head, _ = _body(message)
    body = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(body, entry)
    return _reframe(kind, head, body)


def with_ids(message: bytes, ids) -> bytes:
    kind, head, _ = _body(message)
    return _reframe(kind, head, Writer().ids(sorted(ids)))


def ids_of(message: bytes) -> tuple[int, ...]:
    return m.read_ids(_body(message)[2], max_count=1 << 16)


def statements_of(message: bytes) -> dict:
    return m.read_statements(_body(message)[2], max_count=1 << 16)


def with_statements(message: bytes, statements: dict) -> bytes:
    kind, head, _ = _body(message)
    return _reframe(kind, head, m.write_statements(Writer(), statements))


def blobs_of(message: bytes) -> dict[int, bytes]:
    return m.read_blobs(_body(message)[2], max_count=1 << 16, blob_size=m.SHARE_CIPHERTEXT)


def with_blobs(message: bytes, blobs: dict[int, bytes]) -> bytes:
    kind, head, _ = _body(message)
    return _reframe(kind, head, m.write_blobs(Writer(), blobs))


def convictions_of(message: bytes) -> list[tuple[int, int, dict]]:
    _, _, reader = _body(message)
    return [m.read_conviction(reader, max_count=1 << 16) for _ in range(reader.u32())]


def with_convictions(message: bytes, convictions) -> bytes:
    kind, head, _ = _body(message)
    body = Writer().u32(len(convictions))
    for owner, share_kind, shares in convictions:
        m.write_conviction(body, owner, share_kind, shares)
    return _reframe(kind, head, body)


def flip_last(message: bytes) -> bytes:
    return message[:-1] + bytes([message[-1] ^ 1])


def _forge_signature(entry: m.KeyEntry) -> m.KeyEntry:
    return m.KeyEntry(entry.client, entry.c_public, entry.s_public, entry.commitment, flip_last(entry.signature))


def invalid_cases(cases: dict[str, dict]) -> list[dict]:
    """Server messages an honest client must refuse: (id, base, stage, client, message, error, note)."""
    small, sparse = cases["secagg-4-no-dropout"], cases["secagg+-8-sparse-drop-masked-input"]

    def down(case, stage, client) -> bytes:
        return bytes.fromhex(case["down"][stage][str(client)])

    def up(case, stage, client) -> bytes:
        return bytes.fromhex(case["up"][stage][str(client)])

    def stranger(case, client) -> int:
        """A non-neighbour of ``client`` that signed a survivor statement."""
        return next(c for c in case["roster"] if c != client and c not in case["graph"][str(client)]
                    and str(c) in case["up"]["consistency_check"])

    inst = instance_of(small)
    convict = cases["secagg-5-convict-dealer"]
    proof = convictions_of(down(convict, "convict", 0))  # [(3, SELF_MASK, holder -> signed share)]
    ((cheat, kind, signed),) = proof
    first = min(signed)
    forged = {**signed, first: ((signed[first][0] + 1) % shamir.PRIME, *signed[first][1:])}
    honest_owner = 4  # the genuine signed self-mask shares of an honest dealer, as its holders revealed them
    honest = {h: m.read_shares(_body(up(convict, "unmask", h))[2], max_count=1 << 16)[honest_owner][1:]
              for h in convict["roster"] if h != honest_owner}
    other = Instance(inst.session, inst.round + 1, inst.group, inst.roster).digest  # the next round's instance
    s0 = sparse["roster"][0]
    far = stranger(sparse, s0)
    survivors_far = down(sparse, "consistency_check", far)
    far_statement = (ids_of(survivors_far), bytes(_body(up(sparse, "consistency_check", far))[2].raw(m.SIG_BYTES)))
    statements_1 = statements_of(down(small, "unmask", 1))
    changed = dict(statements_1)
    changed[0] = (tuple(v for v in changed[0][0] if v != 2), changed[0][1])  # "2 dropped", after 0 signed

    table = [
        ("keys-truncated", small, "share_keys", 0, down(small, "share_keys", 0)[:-1], "MalformedMessageError",
         "one byte short"),
        ("keys-wrong-kind", small, "share_keys", 2,
         (lambda msg: msg[:3] + bytes([msg[3] + 1]) + msg[4:])(down(small, "share_keys", 2)),
         "MalformedMessageError", "another message kind"),
        ("keys-other-instance", small, "share_keys", 1, rehead(down(small, "share_keys", 1), digest=other),
         "ProtocolIntegrityError", "the header names the instance of round 2"),
        ("keys-misaddressed", small, "share_keys", 0, down(small, "share_keys", 1), "ProtocolIntegrityError",
         "client 1's KEYS given to client 0"),
        ("keys-own-entry", small, "share_keys", 0,
         with_keys(down(small, "share_keys", 0),
                   [*keys_of(down(small, "share_keys", 0))[:2], entry_of(up(small, "advertise_keys", 0))]),
         "ProtocolIntegrityError", "the client's own advertisement listed as a neighbour's"),
        ("keys-all-signatures-forged", small, "share_keys", 0,
         with_keys(down(small, "share_keys", 0), [_forge_signature(e) for e in keys_of(down(small, "share_keys", 0))]),
         "InsufficientParticipantsError", "no entry verifies: fewer than t neighbours, no share is sent"),
        ("keys-non-neighbour", sparse, "share_keys", s0,
         with_keys(down(sparse, "share_keys", s0),
                   [*keys_of(down(sparse, "share_keys", s0))[1:], entry_of(up(sparse, "advertise_keys", far))]),
         "ProtocolIntegrityError", "a genuine entry of a roster member that is not a neighbour in this instance"),
        ("ciphertexts-unknown-sender", small, "check_shares", 0,
         (lambda blobs: with_blobs(down(small, "check_shares", 0), {0: blobs.pop(1), **blobs}))(
             blobs_of(down(small, "check_shares", 0))),
         "ProtocolIntegrityError", "a share ciphertext 'from' the client itself"),
        ("qualified-non-neighbour", sparse, "masked_input", s0,
         with_ids(down(sparse, "masked_input", s0), {*ids_of(down(sparse, "masked_input", s0))[1:], far}),
         "ProtocolIntegrityError", "QUALIFIED lists a non-neighbour"),
        ("qualified-below-threshold", small, "masked_input", 0, with_ids(down(small, "masked_input", 0), {1}),
         "InsufficientParticipantsError", "fewer than t qualified neighbours: the input is not spent nor sent"),
        ("survivors-non-neighbour", sparse, "consistency_check", s0,
         with_ids(down(sparse, "consistency_check", s0), {*ids_of(down(sparse, "consistency_check", s0))[1:], far}),
         "ProtocolIntegrityError", "SURVIVORS lists a non-neighbour"),
        ("survivors-other-instance", small, "consistency_check", 3,
         rehead(down(small, "consistency_check", 3), digest=other), "ProtocolIntegrityError",
         "the header names the instance of round 2"),
        ("unmask-forged-statement", small, "unmask", 1, flip_last(down(small, "unmask", 1)), "ProtocolIntegrityError",
         "the last statement's signature does not verify"),
        ("unmask-statement-changed", small, "unmask", 1, with_statements(down(small, "unmask", 1), changed),
         "ProtocolIntegrityError", "a statement's survivor list changed after it was signed"),
        ("unmask-too-few-statements", small, "unmask", 1,
         with_statements(down(small, "unmask", 1), dict(list(statements_1.items())[:1])),
         "InsufficientParticipantsError", "fewer than t neighbours vouch that the client survived"),
        ("unmask-non-neighbour-statement", sparse, "unmask", s0,
         with_statements(down(sparse, "unmask", s0),
                         {**dict(list(statements_of(down(sparse, "unmask", s0)).items())[1:]), far: far_statement}),
         "ProtocolIntegrityError", "a genuine statement by a non-neighbour"),
        ("unmask-truncated", small, "unmask", 2, down(small, "unmask", 2)[:-1], "MalformedMessageError",
         "one byte short"),
        ("unmask-other-instance", small, "unmask", 2, rehead(down(small, "unmask", 2), digest=other),
         "ProtocolIntegrityError", "the header names the instance of round 2"),
        ("conviction-forged-proof", convict, "convict", 0,
         with_convictions(down(convict, "convict", 0), [(cheat, kind, forged)]), "ProtocolIntegrityError",
         "one share of the proof changed: the dealer's signature fails, no pairwise key is revealed"),
        ("conviction-too-few-shares", convict, "convict", 0,
         with_convictions(down(convict, "convict", 0), [(cheat, kind, dict(list(signed.items())[:2]))]),
         "ProtocolIntegrityError", "fewer than t signed shares prove nothing"),
        ("conviction-honest-dealer", convict, "convict", 0,
         with_convictions(down(convict, "convict", 0), [(honest_owner, m.SELF_MASK, honest)]),
         "ProtocolIntegrityError", "the genuine signed shares of an honest dealer rebuild its committed seed"),
        ("conviction-repeated-dealer", convict, "convict", 1,
         with_convictions(down(convict, "convict", 1), [*proof, *proof]), "ProtocolIntegrityError",
         "the same dealer twice in one request"),
    ]
    out = []
    for case_id, base, stage, client, message, error, note in table:
        out.append({"id": case_id, "base": base["id"], **{k: base[k] for k in ("session", "round", "group", "roster",
                                                                              "digest")},
                    "stage": stage, "client": client, "message": message.hex(), "error": error, "note": note})
    return out


def build() -> dict[str, dict]:
    generate = [{"id": case_id, **transcript(case_id)} for case_id in SPECS]
    by_id = {case["id"]: case for case in generate}
    verify = [{"id": g["id"], "base": g["id"], **{k: g[k] for k in ("session", "round", "group", "roster", "digest")},
               "note": "replay `up` into a server of this instance; it must reply `down` and output `sum`"}
              for g in generate]
    return {
        "generate": {"protocol": "secagg", "wire_version": 1, "kind": "generate", "seed": SEED.hex(), "cases": generate},
        "verify": {"protocol": "secagg", "wire_version": 1, "kind": "verify", "cases": verify},
        "invalid": {"protocol": "secagg", "wire_version": 1, "kind": "invalid", "cases": invalid_cases(by_id)},
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in build().items():
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
