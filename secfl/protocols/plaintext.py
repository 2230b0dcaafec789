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

from secfl.exceptions import InsufficientParticipantsError
from secfl.hazmat import wire
from secfl.hazmat.ring import ring_sum
from secfl.protocols.rounds import check_round
from secfl.types import NO_DROPOUTS, BaseSecureSum, DropoutSchedule, RoundResult, ServerView, Update


class Plaintext(BaseSecureSum):
    """Sum the clients' vectors per group, in the clear.

    Vectors travel as wire-format bytes, exactly as a real deployment would send them. Real values
    are summed in float64; ring elements (uint32/uint64 words) are summed mod 2^32 / 2^64, which the ring stage reduces.

    Capabilities: sums any input kind, groups of any size; ``secure`` is False (the server sees every upload).

    Guarantee: none for privacy. Correctness: ``sums[g]`` is the exact sum over the group's survivors.
    Raises ``InsufficientParticipantsError`` if every client of some group dropped.

    References: McMahan et al., Communication-Efficient Learning of Deep Networks from
        Decentralized Data, AISTATS 2017 (FedAvg).
    """

    name: ClassVar[str] = "plaintext"
    stages: ClassVar[tuple[str, ...]] = ("upload",)
    input_stage: ClassVar[str] = "upload"
    input_kind: ClassVar[str] = "any"
    secure: ClassVar[bool] = False

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
