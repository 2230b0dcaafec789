"""The plaintext sum: the insecure reference every secure protocol is tested against.

Threat model: none. The server receives every client's encoded vector in the clear; its view
holds each individual input. Use it as the differential-test oracle and as the "no secure
aggregation" baseline; never where inputs are private (see SECURITY.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError
from secfl.hazmat import wire
from secfl.hazmat.ring import ring_sum
from secfl.types import NO_DROPOUTS, DropoutSchedule, RoundResult, ServerView, Update


def check_round(updates: Sequence[Update], groups: Sequence[Sequence[int]]) -> dict[int, Update]:
    """Validate a round's inputs shared by every protocol; return the updates by client id.

    Raises:
        ConfigurationError: duplicate ids, ragged or mixed-type vectors, a client in no group or
            in two, a group naming an unknown client, or an empty group.
    """
    by_id: dict[int, Update] = {}
    for update in updates:
        if update.client_id in by_id:
            raise ConfigurationError(f"client {update.client_id} sent two updates in one round")
        by_id[update.client_id] = update
    if not by_id:
        raise ConfigurationError("a round needs at least one update")
    first = next(iter(by_id.values())).values
    for update in by_id.values():
        if update.values.shape != first.shape or update.values.dtype != first.dtype:
            raise ConfigurationError(
                f"client {update.client_id} sent shape {update.values.shape} {update.values.dtype}, "
                f"expected {first.shape} {first.dtype}"
            )
    seen: set[int] = set()
    for index, group in enumerate(groups):
        if not group:
            raise ConfigurationError(f"group {index} is empty")
        for cid in group:
            if cid not in by_id:
                raise ConfigurationError(f"group {index} names client {cid}, which sent no update")
            if cid in seen:
                raise ConfigurationError(f"client {cid} is in two groups")
            seen.add(cid)
    missing = sorted(set(by_id) - seen)
    if missing:
        raise ConfigurationError(f"clients {missing} are in no group")
    return by_id


class Plaintext:
    """Sum the clients' vectors per group, in the clear.

    Vectors travel as wire-format bytes, exactly as a real deployment would send them. Real values
    are summed in float64; ring elements (uint32/uint64 words) are summed mod 2^32 / 2^64, which the ring stage reduces.

    Guarantee: none for privacy. Correctness: ``sums[g]`` is the exact sum over the group's survivors.
    Raises ``InsufficientParticipantsError`` if every client of some group dropped.

    References: McMahan et al., Communication-Efficient Learning of Deep Networks from
        Decentralized Data, AISTATS 2017 (FedAvg).
    """

    name: ClassVar[str] = "plaintext"
    stages: ClassVar[tuple[str, ...]] = ("upload",)
    input_stage: ClassVar[str] = "upload"

    def run(
        self,
        updates: Sequence[Update],
        *,
        groups: Sequence[Sequence[int]],
        dropouts: DropoutSchedule = NO_DROPOUTS,
    ) -> RoundResult:
        start = time.perf_counter()
        by_id = check_round(updates, groups)
        silent = dropouts.dropped_by("upload", self.stages)
        template = next(iter(by_id.values())).values
        received: dict[int, tuple[bytes, ...]] = {}
        sums, survivors = [], []
        for index, group in enumerate(groups):
            alive = [cid for cid in group if cid not in silent]
            if not alive:
                raise InsufficientParticipantsError(f"every client of group {index} dropped out")
            rows = []
            for cid in alive:
                message = wire.encode_vector(by_id[cid].values)  # client side
                received[cid] = (message,)
                rows.append(wire.decode_vector(message, length=template.size, dtype=template.dtype))
            stacked = np.stack(rows)
            sums.append(ring_sum(stacked) if stacked.dtype.kind == "u" else stacked.sum(0, dtype=np.float64))
            survivors.append(tuple(alive))
        view = ServerView(protocol=self.name, received=received)
        measurements = {
            "plaintext/bytes_up": float(view.total_bytes),
            "plaintext/bytes_down": 0.0,
            "plaintext/dropped": float(len(by_id) - len(received)),
            "plaintext/seconds": time.perf_counter() - start,
        }
        return RoundResult(np.stack(sums), tuple(survivors), view, measurements)

    def __repr__(self) -> str:
        return "Plaintext()"
