"""Build the SecAgg known-answer vectors (explicit deterministic test mode) and write them to protocols/.

    .venv/bin/python tests/vectors/secagg_vectors.py      # rewrite protocols/secagg/vectors/*.json

The order in which the test randomness is consumed is the one SecAggPlus.run uses (SPEC.md, "Test
mode"): the session id, then per client in group order its long-term key (first use only) followed
by its round keys and self-mask seed; then the stages in order, clients in group order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from secfl.hazmat.randomness import InsecureDeterministicRandomness
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient
from secfl.protocols.secagg_server import SecAggServer

OUT = Path(__file__).resolve().parents[2] / "protocols" / "secagg" / "vectors"
SEED = b"secfl secagg known-answer vectors v1"
STEPS = ("share_keys", "masked_input", "consistency_check", "unmask")


def transcript(kind: str = "secagg", n: int = 4, d: int = 5, dropouts: dict[int, str] | None = None,
               stop_before: tuple[str, int] | None = None) -> dict:
    """Run one deterministic round, recording every message; optionally return the live client
    ``stop_before = (stage, client)`` just before it handles that stage (for the invalid cases)."""
    dropouts = dropouts or {}
    protocol = (SecAgg if kind == "secagg" else SecAggPlus)(randomness=InsecureDeterministicRandomness(SEED))
    inputs = {c: (np.arange(d, dtype=np.uint32) * 1000 + c * 7 + 2**31) for c in range(n)}
    session = protocol.randomness.bytes(m.SESSION_BYTES)
    header = m.Header(session, 1, 0, m.SERVER, m.SERVER)
    params = protocol.params(n)
    clients = {c: SecAggClient(c, header=header, params=params, values=inputs[c], signing_key=protocol.identity(c),
                               directory=protocol.directory, randomness=protocol.randomness) for c in range(n)}
    server = SecAggServer(header=header, members=list(range(n)), params=params, directory=protocol.directory,
                          length=d, dtype=np.uint32)
    order = ("advertise_keys", *STEPS)

    def alive(stage: str, replies) -> list[int]:
        return [c for c in range(n) if (c not in dropouts or order.index(dropouts[c]) > order.index(stage))
                and (replies is None or c in replies)]

    record = {"up": {}, "down": {}}
    up = {c: clients[c].advertise_keys() for c in alive("advertise_keys", None)}
    record["up"]["advertise_keys"] = up
    replies = server.receive_advertise(up)
    steps = [SecAggClient.share_keys, SecAggClient.masked_input, SecAggClient.consistency_check, SecAggClient.unmask]
    handlers = [server.receive_shares, server.receive_masked, server.receive_consistency, server.receive_unmask]
    for stage, client_step, server_step in zip(STEPS, steps, handlers):
        record["down"][stage] = replies
        if stop_before and stop_before[0] == stage:
            return {"client": clients[stop_before[1]], "record": record}
        up = {c: client_step(clients[c], replies[c]) for c in alive(stage, replies)}
        record["up"][stage] = up
        replies = server_step(up)
    return {
        "protocol": kind, "n": n, "length": d, "dtype": "uint32", "threshold": params.threshold,
        "neighbours": params.neighbours, "session": session.hex(), "round": 1, "group": 0,
        "inputs": {str(c): [int(v) for v in x] for c, x in inputs.items()},
        "dropouts": {str(c): s for c, s in dropouts.items()},
        "directory": {str(c): protocol.directory.public_key(c).hex() for c in range(n)},
        "survivors": list(server.survivors),
        "sum": [int(v) for v in replies],
        "up": {stage: {str(c): msg.hex() for c, msg in msgs.items()} for stage, msgs in record["up"].items()},
        "down": {stage: {str(c): msg.hex() for c, msg in msgs.items()} for stage, msgs in record["down"].items()},
    }


def mutate(message: bytes, how: str) -> bytes:
    if how == "truncate":
        return message[:-1]
    if how == "flip-last-byte":
        return message[:-1] + bytes([message[-1] ^ 1])
    if how == "flip-round":  # the header's round field starts at 8 + 16
        return message[:24] + bytes([message[24] ^ 1]) + message[25:]
    if how == "wrong-kind":
        return message[:3] + bytes([message[3] + 1]) + message[4:]
    raise ValueError(how)


INVALID = [  # (id, stage, client, mutation, error)
    ("keys-truncated", "share_keys", 0, "truncate", "MalformedMessageError"),
    ("keys-bad-signature", "share_keys", 0, "flip-last-byte", "ProtocolIntegrityError"),
    ("keys-other-round", "share_keys", 1, "flip-round", "ProtocolIntegrityError"),
    ("keys-wrong-kind", "share_keys", 2, "wrong-kind", "MalformedMessageError"),
    ("ciphertext-tampered", "masked_input", 0, "flip-last-byte", "ProtocolIntegrityError"),
    ("survivors-other-round", "consistency_check", 3, "flip-round", "ProtocolIntegrityError"),
    ("unmask-bad-signature", "unmask", 1, "flip-last-byte", "ProtocolIntegrityError"),
    ("unmask-truncated", "unmask", 2, "truncate", "MalformedMessageError"),
]


def build() -> dict[str, dict]:
    generate = [
        {"id": "secagg-4-no-dropout", **transcript("secagg")},
        {"id": "secagg-6-drop-share-keys-and-unmask", **transcript("secagg", n=6, dropouts={1: "share_keys", 3: "unmask"})},
        {"id": "secagg+-4", **transcript("secagg+")},
    ]
    base = generate[0]
    invalid = []
    for case_id, stage, client, how, error in INVALID:
        message = bytes.fromhex(base["down"][stage][str(client)])
        invalid.append({"id": case_id, "base": base["id"], "stage": stage, "client": client,
                        "message": mutate(message, how).hex(), "error": error})
    verify = [{"id": g["id"], "base": g["id"], "note": "replay `up` into a server; it must reply `down` and output `sum`"}
              for g in generate]
    return {
        "generate": {"protocol": "secagg", "wire_version": 1, "kind": "generate", "seed": SEED.hex(), "cases": generate},
        "verify": {"protocol": "secagg", "wire_version": 1, "kind": "verify", "cases": verify},
        "invalid": {"protocol": "secagg", "wire_version": 1, "kind": "invalid", "cases": invalid},
    }


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in build().items():
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {OUT}")
