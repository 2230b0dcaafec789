"""SecAgg and SecAgg+: masked secure sums per group, simulated in-process over bytes-only messages.

Threat model (see protocols/secagg/SPEC.md): the server is malicious and may collude with at most c
of any client's neighbours; clients hold long-term Ed25519 keys registered in a ``KeyDirectory``.
Each group runs one bound instance (session, round, group, roster); each simulated client keeps a
``ContributionRecord`` so its input of a round enters at most one instance. The server learns, per
group, only the sum over the survivors U3 (at least t of them) and who survived. Dropouts and faulty
clients at any stage are tolerated while t clients (and t holders of each needed share) remain;
otherwise ``InsufficientParticipantsError``.

``SecAgg`` uses the complete graph (Bonawitz et al. CCS'17); ``SecAggPlus`` the Harary graph with
k = O(log n) neighbours (Bell et al. CCS'20), each client working with its k neighbours only. Fresh
session ids, round keys and masks every instance: nothing is reused across rounds or groups.
The simulation derives a roster's parameters from its size because it is the honest server too; a
deployed client derives them from its own configured n and refuses rosters of another size.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat.randomness import OS_RANDOM, Randomness
from secfl.protocols.directory import Identities, KeyDirectory
from secfl.protocols.rounds import check_round
from secfl.protocols.secagg_client import STAGES, SecAggClient, input_key
from secfl.protocols.secagg_instance import MAX_CLIENT_ID, SESSION_BYTES, Instance, roster_of
from secfl.protocols.secagg_params import MIN_GROUP, SecAggParams, derive
from secfl.protocols.secagg_record import ContributionRecord
from secfl.protocols.secagg_round import run_instance
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import NO_DROPOUTS, BaseSecureSum, DropoutSchedule, RoundResult, ServerView, Update


class SecAggPlus(BaseSecureSum):
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
    input_kind: ClassVar[str] = "ring"  # masks cancel mod 2^32 / 2^64: ring words only
    min_group_size: ClassVar[int] = MIN_GROUP
    secure: ClassVar[bool] = True
    complete: ClassVar[bool] = False
    binds_model: ClassVar[bool] = True  # run(..., contexts=): the model binding (secfl.protocols.binding)

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
        self._uid = self.randomness.bytes(16)  # names this simulation's inputs in the clients' records
        self._records: dict[int, ContributionRecord] = {}

    def params(self, n: int) -> SecAggParams:
        """The derived (or checked) parameters for a group of ``n`` clients."""
        return derive(n, dropout_rate=self.dropout_rate, corrupt_rate=self.corrupt_rate,
                      security_bits=self.security_bits, failure_bits=self.failure_bits, complete=self.complete,
                      neighbours=self.neighbours if self.neighbours is not None and self.neighbours < n else None,
                      threshold=self.threshold)

    def check_group_size(self, size: int) -> None:
        """Raise if a group of ``size`` is below the minimum or its parameters (and overrides) do not hold."""
        super().check_group_size(size)
        self.params(size)

    def identity(self, client: int) -> bytes:
        """This simulation's long-term signing key of ``client`` (made and registered on first use)."""
        return self._identities.signing_key(client)

    def client_record(self, client: int) -> ContributionRecord:
        """The contribution record of a simulated client (in memory; a deployment keeps a file)."""
        return self._records.setdefault(client, ContributionRecord())

    def run(self, updates: Sequence[Update], *, groups: Sequence[Sequence[int]],
            dropouts: DropoutSchedule = NO_DROPOUTS, contexts: Mapping[int, bytes] | None = None) -> RoundResult:
        """One round: one bound protocol instance per group; returns the per-group sums over survivors.

        ``contexts``: each client's model binding (``binding.model_context`` of the model it trained on; None:
        unbound). A client's instance carries its own context; the simulated server takes the context most
        members of the group share, so a member that received another model is excluded like a dropout (and
        the group fails if too few remain): clients on different models never complete an instance together.

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
        if max(by_id) > MAX_CLIENT_ID or min(by_id) < 0:
            raise ConfigurationError(f"{self.name}: client ids must be in [0, {MAX_CLIENT_ID}]")
        self._round += 1
        session = self.randomness.bytes(SESSION_BYTES)
        sums, survivors, received, down, used = [], [], {}, 0, []
        for index, group in enumerate(groups):
            instance = Instance(session, self._round, index, roster_of(group))
            total, alive, got, sent, params = self._run_group(instance, by_id, dropouts, contexts)
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

    def clients(self, instance: Instance, values: Mapping[int, np.ndarray],
                contexts: Mapping[int, bytes] | None = None) -> dict[int, SecAggClient]:
        """Honest simulated clients of ``instance`` (each with its own record and long-term key, and its own
        context if ``contexts`` names them)."""
        params = self.params(instance.n)
        mine = {c: replace(instance, context=contexts[c]) if contexts else instance for c in instance.roster}
        return {c: SecAggClient(c, instance=mine[c], params=params, values=values[c], signing_key=self.identity(c),
                                directory=self.directory, record=self.client_record(c),
                                input_key=input_key(self._uid, instance.round, c), randomness=self.randomness)
                for c in instance.roster}

    def server(self, instance: Instance, *, length: int, dtype: np.dtype) -> SecAggServer:
        """The server of ``instance``."""
        return SecAggServer(instance=instance, params=self.params(instance.n), directory=self.directory,
                            length=length, dtype=dtype)

    def _run_group(self, instance: Instance, by_id: dict[int, Update], dropouts: DropoutSchedule,
                   contexts: Mapping[int, bytes] | None = None):
        template = by_id[instance.roster[0]].values
        if contexts is not None:
            missing = [c for c in instance.roster if c not in contexts]
            if missing:
                raise ConfigurationError(f"contexts: no model binding for clients {missing[:10]}")
            shared = Counter(contexts[c] for c in instance.roster).most_common(1)[0][0]
            instance = replace(instance, context=shared)  # the server's: the context most members share
        clients = self.clients(instance, {c: by_id[c].values for c in instance.roster}, contexts)
        server = self.server(instance, length=template.size, dtype=template.dtype)
        total, sent = run_instance(clients, server, dropped_by=lambda stage: dropouts.dropped_by(stage, self.stages))
        return total, server.survivors, server.received, sent, server.params

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
