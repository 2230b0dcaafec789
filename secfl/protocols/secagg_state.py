"""A SecAgg client's state between stages as bytes, so a client can live in a process that does not survive
between messages (a Flower node's ClientApp, a worker pool, a restart).

The state holds the client's round secrets (its X25519 round keys, its self-mask seed, the pairwise keys and
the shares it holds): it must stay on the client, as secret as its long-term key. It is plain JSON (ints,
hex strings), read with a strict schema: loading it never executes code, and a malformed state is
refused with the one opaque ``ProtocolIntegrityError``. It does not hold the long-term signing key, the key
directory or the contribution record: the caller passes them back, as it did to the constructor.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from secfl.exceptions import ProtocolIntegrityError
from secfl.hazmat.randomness import OS_RANDOM, Randomness
from secfl.protocols import secagg_graph
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_client import SecAggClient
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_params import SecAggParams
from secfl.protocols.secagg_record import ContributionRecord

__all__ = ["dump_client", "load_client"]

_FORMAT = 2  # 2: the instance carries its context (model binding)


def _entry(e: m.KeyEntry) -> list[Any]:
    return [e.client, e.c_public.hex(), e.s_public.hex(), e.commitment.hex(), e.signature.hex()]


def dump_client(client: SecAggClient) -> bytes:
    """``client``'s state after its last completed stage (see the module doc for what it holds)."""
    values = client.values if not callable(client.values) else client.values(client.params.n)
    state = {
        "format": _FORMAT, "id": client.id, "stage": client.stage,
        "instance": [client.instance.session.hex(), client.instance.round, client.instance.group,
                     list(client.instance.roster), client.instance.context.hex()],
        "round_keys": [k.hex() for k in (client.c_sk, client.c_pk, client.s_sk, client.s_pk, client.b_seed)],
        "input_key": client.input_key.hex(),
        "values": [str(values.dtype), values.astype(values.dtype.newbyteorder("<")).tobytes().hex()],
        "keys": [[v, share.hex(), mask.hex(), _entry(entry)] for v, (share, mask, entry) in
                 sorted(getattr(client, "keys", {}).items())],
        "held": [[u, elements.astype("<u8").tobytes().hex(), signature.hex(), d0.hex(), d1.hex()]
                 for u, (elements, signature, (d0, d1)) in sorted(getattr(client, "held", {}).items())],
        "masked_with": list(getattr(client, "masked_with", ())),
        "alive": sorted(getattr(client, "alive", ())),
    }
    return json.dumps(state, separators=(",", ":")).encode()


def load_client(data: bytes, *, params: SecAggParams, signing_key: bytes, directory: KeyDirectory,
                record: ContributionRecord, randomness: Randomness = OS_RANDOM) -> SecAggClient:
    """The client ``dump_client`` wrote, ready for its next stage.

    Raises:
        ProtocolIntegrityError: ``data`` is not a state this module wrote, or ``params`` are not for its roster.
    """
    try:
        s = json.loads(bytes(data))
        if s["format"] != _FORMAT:
            raise ValueError
        session, round_, group, roster, context = s["instance"]
        instance = Instance(bytes.fromhex(session), int(round_), int(group), tuple(int(c) for c in roster),
                            bytes.fromhex(context))
        dtype = np.dtype(s["values"][0])
        if dtype not in (np.uint32, np.uint64):
            raise ValueError
        values = np.frombuffer(bytes.fromhex(s["values"][1]), dtype=dtype.newbyteorder("<")).astype(dtype)
        client = SecAggClient(int(s["id"]), instance=instance, params=params, values=values,
                              signing_key=signing_key, directory=directory, record=record,
                              input_key=bytes.fromhex(s["input_key"]), randomness=randomness)
        client.c_sk, client.c_pk, client.s_sk, client.s_pk, client.b_seed = (bytes.fromhex(k)
                                                                             for k in s["round_keys"])
        client.stage = int(s["stage"])
        if s["keys"]:
            client.keys = {int(v): (bytes.fromhex(sh), bytes.fromhex(mk),
                                    m.KeyEntry(int(e[0]), *(bytes.fromhex(x) for x in e[1:])))
                           for v, sh, mk, e in s["keys"]}
        if s["held"]:
            client.held = {int(u): (np.frombuffer(bytes.fromhex(el), dtype="<u8").astype(np.uint64)
                                    .reshape(2, m.SHARE_WORDS), bytes.fromhex(sig),
                                    (bytes.fromhex(d0), bytes.fromhex(d1)))
                           for u, el, sig, d0, d1 in s["held"]}
        if s["masked_with"] or client.stage > 3:
            client.masked_with = tuple(int(v) for v in s["masked_with"])
        if s["alive"] or client.stage > 4:
            client.alive = frozenset(int(v) for v in s["alive"])
        if not set(getattr(client, "keys", {})) <= secagg_graph.neighbours(instance, params.neighbours, client.id):
            raise ValueError
    except ProtocolIntegrityError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        raise ProtocolIntegrityError() from None
    return client
