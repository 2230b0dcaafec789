"""Run one SecAgg instance in-process: the honest relay between ``SecAggClient``s and a ``SecAggServer``.

The one driver every in-process user shares (the ``SecAggPlus`` protocol, the protocol audit, the
tests, the vectors and the benchmarks). Only bytes cross between the two sides. ``tamper`` lets an
attacker rewrite the messages in flight (stage, direction, messages) -> messages; ``progress`` is
called after each stage with (stage, seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np

from secfl.protocols.secagg_client import STAGES, SecAggClient
from secfl.protocols.secagg_server import SecAggServer

STEPS = (
    ("share_keys", SecAggClient.share_keys, SecAggServer.receive_shares),
    ("check_shares", SecAggClient.check_shares, SecAggServer.receive_accepted),
    ("masked_input", SecAggClient.masked_input, SecAggServer.receive_masked),
    ("consistency_check", SecAggClient.consistency_check, SecAggServer.receive_consistency),
    ("unmask", SecAggClient.unmask, SecAggServer.receive_unmask),
    ("convict", SecAggClient.convict, SecAggServer.receive_pair_keys),
)
assert tuple(s for s, _, _ in STEPS) == STAGES[1:]

Tamper = Callable[[str, str, dict], dict]


def _untouched(stage: str, direction: str, messages: dict) -> dict:
    return messages


def run_instance(clients: Mapping[int, SecAggClient], server: SecAggServer, *,
                 dropped_by: Callable[[str], set[int]] = lambda stage: set(), tamper: Tamper = _untouched,
                 progress: Callable[[str, float], None] | None = None) -> tuple[np.ndarray, int]:
    """Run every stage (``convict`` exchanges messages only when a dealer cheated); returns (the server's
    sum, bytes sent down to clients).

    ``dropped_by(stage)`` names the clients silent from ``stage`` on.

    Raises:
        ProtocolError: from the server (too few participants, integrity) or an honest client's refusal.
    """
    start = time.perf_counter()
    gone = dropped_by(STAGES[0])
    up = tamper(STAGES[0], "up", {c: cl.advertise_keys() for c, cl in clients.items() if c not in gone})
    replies = tamper(STAGES[0], "down", server.receive_advertise(up))
    if progress:
        progress(STAGES[0], time.perf_counter() - start)
    down = 0
    result = None
    for stage, client_step, server_step in STEPS:
        down += sum(len(r) for r in replies.values())
        gone = dropped_by(stage)
        up = tamper(stage, "up", {c: client_step(clients[c], r) for c, r in replies.items()
                                  if c not in gone and c in clients})
        result = server_step(server, up)
        if progress:
            progress(stage, time.perf_counter() - start)
        if stage != STEPS[-1][0]:
            replies = tamper(stage, "down", result)
    return result, down
