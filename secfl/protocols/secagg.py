"""SecAgg and SecAgg+: masked secure sums per group, simulated in-process over bytes-only messages.

Threat model (see protocols/secagg/SPEC.md): the server is malicious but does not collude with more
than c of any client's neighbours; clients hold long-term Ed25519 keys registered in a
``KeyDirectory``. The server learns, per group, only the sum over the survivors U3 (at least t of
them) and who survived. Dropouts at any stage are tolerated while at least t clients (and t
holders of each needed share) remain; otherwise ``InsufficientParticipantsError``.

``SecAgg`` uses the complete graph (Bonawitz et al. CCS'17); ``SecAggPlus`` the Harary graph with
k = O(log n) neighbours (Bell et al. CCS'20). Both run one protocol instance per group per round,
with a fresh session id, fresh round keys and fresh masks: nothing is reused across rounds or groups.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat.randomness import OS_RANDOM, Randomness
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import Identities, KeyDirectory
from secfl.protocols.rounds import check_round
from secfl.protocols.secagg_client import STAGES, SecAggClient
from secfl.protocols.secagg_params import MIN_GROUP, SecAggParams, derive
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import NO_DROPOUTS, DropoutSchedule, RoundResult, ServerView, Update

MAX_CLIENT_ID = 2**31 - 3  # Shamir evaluation points are id + 1 < 2^31 - 1


class SecAggPlus:
    """Masked secure sum with a sparse neighbour graph (SecAgg+).

    Args:
        neighbours: k, overriding the derived value (even, or n - 1 for the complete graph).
        threshold: t, overriding the derived value within the safe range (see ``secagg_params``).
        dropout_rate: expected fraction of clients that drop (sizes k and t), in [0, 0.5).
        corrupt_rate: assumed fraction of clients colluding with the server, in [0, 0.5).
        security_bits: sigma, the statistical security target (2^-sigma).
        failure_bits: eta, the target probability 2^-eta that a round fails for lack of shares.
        randomness: the OS CSPRNG unless a known-answer test mode is passed explicitly.

    Guarantee: per group, the server learns the sum of the inputs of the survivors U3 (|U3| >= t),
    never an individual input, against a malicious server colluding with at most c neighbours of a
    client, and with the survivors' graph connected except with probability 2^-sigma.

    References: Bonawitz et al., Practical Secure Aggregation for Privacy-Preserving Machine
        Learning, CCS 2017; Bell et al., Secure Single-Server Aggregation with (Poly)Logarithmic
        Overhead, CCS 2020.
    """

    name: ClassVar[str] = "secagg+"
    stages: ClassVar[tuple[str, ...]] = STAGES
    input_stage: ClassVar[str] = "masked_input"
    needs_ring: ClassVar[bool] = True
    min_group_size: ClassVar[int] = MIN_GROUP
    complete: ClassVar[bool] = False

    def __init__(self, *, neighbours: int | None = None, threshold: int | None = None, dropout_rate: float = 0.05,
                 corrupt_rate: float = 0.0, security_bits: int = 40, failure_bits: int = 20,
                 randomness: Randomness | None = None) -> None:
        for key, value in (("neighbours", neighbours), ("threshold", threshold)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"{self.name}: {key}={value!r} must be an int >= 1")
        for key, value in (("security_bits", security_bits), ("failure_bits", failure_bits)):
            if not isinstance(value, int) or not 1 <= value <= 128:
                raise ConfigurationError(f"{self.name}: {key}={value!r} must be an int in 1..128")
        for key, value in (("dropout_rate", dropout_rate), ("corrupt_rate", corrupt_rate)):
            if not isinstance(value, (int, float)) or not 0 <= value < 0.5:
                raise ConfigurationError(f"{self.name}: {key}={value!r} must be a number in [0, 0.5)")
        self.neighbours, self.threshold = neighbours, threshold
        self.dropout_rate, self.corrupt_rate = float(dropout_rate), float(corrupt_rate)
        self.security_bits, self.failure_bits = security_bits, failure_bits
        self.randomness = randomness if randomness is not None else OS_RANDOM
        self.directory = KeyDirectory()
        self._identities = Identities(self.directory, self.randomness)
        self._round = 0

    def params(self, n: int) -> SecAggParams:
        """The derived (or checked) parameters for a group of ``n`` clients."""
        return derive(n, dropout_rate=self.dropout_rate, corrupt_rate=self.corrupt_rate,
                      security_bits=self.security_bits, failure_bits=self.failure_bits, complete=self.complete,
                      neighbours=self.neighbours if self.neighbours is not None and self.neighbours < n else None,
                      threshold=self.threshold)

    def identity(self, client: int) -> bytes:
        """This simulation's long-term signing key of ``client`` (made and registered on first use)."""
        return self._identities.signing_key(client)

    def run(self, updates: Sequence[Update], *, groups: Sequence[Sequence[int]],
            dropouts: DropoutSchedule = NO_DROPOUTS) -> RoundResult:
        """One round: one protocol instance per group; returns the per-group sums over survivors.

        Raises:
            ConfigurationError: float inputs, ids out of range, groups smaller than 3, bad dropouts.
            InsufficientParticipantsError: fewer than t clients (or share holders) left in a group.
            ProtocolIntegrityError: a check failed (clients refuse a misbehaving server).
        """
        start = time.perf_counter()
        by_id = check_round(updates, groups)
        dropouts.check(self.stages)
        template = next(iter(by_id.values())).values
        if template.dtype not in (np.uint32, np.uint64):
            raise ConfigurationError(f"{self.name} sums ring words, got {template.dtype}; put Quantize last in the stages")
        if max(by_id) > MAX_CLIENT_ID:
            raise ConfigurationError(f"{self.name}: client ids must be <= {MAX_CLIENT_ID}")
        self._round += 1
        session = self.randomness.bytes(m.SESSION_BYTES)
        sums, survivors, received, down, used = [], [], {}, 0, []
        for index, group in enumerate(groups):
            header = m.Header(session, self._round, index, m.SERVER, m.SERVER)
            total, alive, got, sent, params = self._run_group(header, list(group), by_id, dropouts)
            sums.append(total)
            survivors.append(alive)
            received.update({c: tuple(msgs) for c, msgs in got.items()})
            down += sent
            used.append(params)
        view = ServerView(protocol=self.name, received=received)
        measurements = {
            f"{self.name}/bytes_up": float(view.total_bytes),
            f"{self.name}/bytes_down": float(down),
            f"{self.name}/dropped": float(len(by_id) - sum(len(s) for s in survivors)),
            f"{self.name}/neighbours": float(max(p.neighbours for p in used)),
            f"{self.name}/threshold": float(min(p.threshold for p in used)),
            f"{self.name}/failure_log2": max(p.failure_log2 for p in used),
            f"{self.name}/seconds": time.perf_counter() - start,
        }
        return RoundResult(np.stack(sums), tuple(survivors), view, measurements)

    def _run_group(self, header: m.Header, group: list[int], by_id: dict[int, Update], dropouts: DropoutSchedule):
        params = self.params(len(group))
        template = by_id[group[0]].values
        clients = {c: SecAggClient(c, header=header, params=params, values=by_id[c].values, signing_key=self.identity(c),
                                   directory=self.directory, randomness=self.randomness) for c in group}
        server = SecAggServer(header=header, members=group, params=params, directory=self.directory,
                              length=template.size, dtype=template.dtype)

        def alive(stage: str, replies: dict[int, bytes] | None) -> list[int]:
            gone = dropouts.dropped_by(stage, self.stages)
            return [c for c in group if c not in gone and (replies is None or c in replies)]

        sent = 0
        replies = server.receive_advertise({c: clients[c].advertise_keys() for c in alive("advertise_keys", None)})
        steps = (("share_keys", SecAggClient.share_keys, server.receive_shares),
                 ("masked_input", SecAggClient.masked_input, server.receive_masked),
                 ("consistency_check", SecAggClient.consistency_check, server.receive_consistency))
        for stage, client_step, server_step in steps:
            sent += sum(len(r) for r in replies.values())
            replies = server_step({c: client_step(clients[c], replies[c]) for c in alive(stage, replies)})
        sent += sum(len(r) for r in replies.values())
        total = server.receive_unmask({c: clients[c].unmask(replies[c]) for c in alive("unmask", replies)})
        return total, server.survivors, server.received, sent, params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dropout_rate={self.dropout_rate}, corrupt_rate={self.corrupt_rate})"


class SecAgg(SecAggPlus):
    """Masked secure sum over the complete graph (Bonawitz et al. CCS'17): every client is a neighbour.

    Guarantee: as ``SecAggPlus``, with k = n - 1 (no connectivity assumption on dropouts).

    References: Bonawitz et al., Practical Secure Aggregation for Privacy-Preserving Machine
        Learning, CCS 2017.
    """

    name: ClassVar[str] = "secagg"
    complete: ClassVar[bool] = True
