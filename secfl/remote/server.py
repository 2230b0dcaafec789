"""``RemoteServer``: the server side of secure-sum rounds whose clients live elsewhere.

Threat model: as the protocol's (protocols/secagg/SPEC.md). This class is the honest server; the clients
(``RemoteClient``) do not trust it. What it learns per group is the sum of the survivors' encoded inputs
and who survived. A client that does not answer a request (crashed, killed, refused a message) is a dropout
from that stage on, exactly as in the embedded protocol.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError, ProtocolError
from secfl.hazmat.randomness import OS_RANDOM
from secfl.protocols.directory import PUBLIC_KEY_BYTES, KeyDirectory
from secfl.protocols.secagg_instance import MAX_CLIENT_ID, SESSION_BYTES, Instance, roster_of
from secfl.protocols.secagg_server import SecAggServer
from secfl.remote.wire import pack, unpack
from secfl.types import RoundResult, ServerView, Update

__all__ = ["RemoteServer", "Exchange"]

#: Carries ``{client id: request}`` to the clients; returns ``{client id: reply}`` of those that replied.
Exchange = Callable[[dict[int, bytes]], Mapping[int, bytes]]

_STAGES = ("share_keys", "check_shares", "masked_input", "consistency_check", "unmask", "convict")
_RECEIVE = (SecAggServer.receive_shares, SecAggServer.receive_accepted, SecAggServer.receive_masked,
            SecAggServer.receive_consistency, SecAggServer.receive_unmask, SecAggServer.receive_pair_keys)


class RemoteServer:
    """Runs ``pipeline``'s secure sums (plaintext, SecAgg or SecAgg+) with remote clients of ``dimension``-long
    float updates.

    Args:
        pipeline: the checked pipeline, the same the clients were given.
        dimension: the length of every client's float update.
        reproducible: send each client the seed of its encoding randomness (the embedded engine's streams,
            so a run matches it exactly). A simulation setting: a deployed client must round and add noise
            with its own randomness (the default, False), or the server could remove its noise.
    """

    def __init__(self, pipeline: Any, dimension: int, *, reproducible: bool = False) -> None:
        if pipeline.protocol.secure and not pipeline.protocol.binds_model:
            raise ConfigurationError(f"{pipeline.protocol!r}: only plaintext, secagg and secagg+ run across processes")
        self.pipeline, self.dimension, self.reproducible = pipeline, int(dimension), reproducible
        self.directory = KeyDirectory()
        self.keys: dict[int, bytes] = {}

    def enroll(self, message: bytes) -> int:
        """Register a client's long-term public key (``RemoteClient.enroll``); return its id. A client id
        enrolls once: a second, different key is refused."""
        fields = unpack(message, "enroll")
        client, key = fields.get("client"), fields.get("public_key")
        if isinstance(client, bool) or not isinstance(client, int) or not 0 <= client <= MAX_CLIENT_ID \
                or not isinstance(key, bytes) or len(key) != PUBLIC_KEY_BYTES:
            raise ProtocolError("a malformed enrollment")
        if self.keys.get(client, key) != key:
            raise ProtocolError(f"client {client} enrolled again with another key")
        if client not in self.keys:
            self.directory.register(client, key)
            self.keys[client] = key
        return client

    def run_round(self, round_: int, weights: Mapping[int, float], *, rng: np.random.Generator, exchange: Exchange,
                  reference: np.ndarray | None = None, context: bytes = b"") -> Any:
        """One round over the clients in ``weights`` (id -> weight, in the round's order), each holding its
        update (``RemoteClient.set_update``); returns the pipeline's ``RoundOutput``. Only clients that run as
        a simulation use the weights' values (their relative weights); a deployed client weighs itself.

        ``rng`` is the round's generator after sampling, as in ``Pipeline.run_round`` (groups and, if
        ``reproducible``, the clients' encoding streams come from it). ``context``: the model binding of the
        model the server sent (``secfl.protocols.binding.model_context``); a client bound to another model
        cannot take part (see ``RemoteClient.set_update``).

        Raises:
            ConfigurationError: a client that never enrolled, more clients than the pipeline allows.
            InsufficientParticipantsError / ProtocolError: a group that cannot complete.
        """
        start, p, ids = time.perf_counter(), self.pipeline, list(weights)
        if len(ids) > p.clients_per_round or not ids:
            raise ConfigurationError(f"a round of {len(ids)} clients (the pipeline takes 1..{p.clients_per_round})")
        bad = [c for c, w in weights.items()
               if isinstance(w, bool) or not (isinstance(w, numbers.Real) and math.isfinite(w) and w > 0)]
        if bad:
            raise ConfigurationError(f"clients {bad[:10]}: a weight must be a finite number > 0")
        missing = [c for c in ids if c not in self.keys]
        if missing:
            raise ConfigurationError(f"clients {missing} never enrolled")
        top = max(weights.values())
        streams = rng.spawn(len(ids) + 1)
        groups = p.grouping.assign(ids, rng=streams[-1])
        session = OS_RANDOM.bytes(SESSION_BYTES)
        traffic = {"up": 0, "down": 0}
        received: dict[int, list[bytes]] = {c: [] for c in ids}

        def send(requests: dict[int, bytes]) -> dict[int, bytes]:
            traffic["down"] += sum(len(r) for r in requests.values())
            replies = {c: r for c, r in exchange(requests).items() if c in requests}
            traffic["up"] += sum(len(r) for r in replies.values())
            out = {}
            for c, reply in replies.items():
                try:
                    out[c] = unpack(reply, "reply")
                except ProtocolError:
                    continue  # a garbled reply is a dropout
                received[c].append(out[c]["payload"])
            return out

        opens = {}
        for index, group in enumerate(groups):
            for c in group:
                seed = streams[ids.index(c)].bit_generator.seed_seq if self.reproducible else None
                opens[c] = pack("open", round=round_, session=session, group=index, roster=list(roster_of(group)),
                                relative_weight=p.relative_weight(float(weights[c]), top),
                                seed=[seed.entropy, list(seed.spawn_key)] if seed is not None else None,
                                directory={str(k): v.hex() for k, v in self.keys.items() if k in group})
        opened = send(opens)
        if p.protocol.secure:
            sums, survivors = self._secagg(groups, session, round_, opened, send, context)
        else:
            sums, survivors = self._plain(groups, opened)
        name = p.protocol.name
        measurements = {f"{name}/bytes_up": float(traffic["up"]), f"{name}/bytes_down": float(traffic["down"]),
                        f"{name}/dropped": float(len(ids) - sum(len(s) for s in survivors)),
                        f"{name}/seconds": time.perf_counter() - start}
        view = ServerView(protocol=name, received={c: tuple(m) for c, m in received.items()})
        result = RoundResult(np.stack(sums), tuple(survivors), view, measurements)
        return p.conclude(result, groups, clients=len(ids), reference=reference, start=start)

    def _plain(self, groups: Sequence[Sequence[int]], opened: dict[int, dict]) -> tuple[list, list]:
        """Each group's plain sum; a reply that is not one encoded vector of the expected length and dtype is
        a dropout (a client cannot crash the server or change the sum's shape)."""
        sums, survivors = [], []
        for group in groups:
            shape = self._encoded_shape(len(group))
            words = {c: _vector(opened[c], shape) for c in group if c in opened}
            alive = tuple(c for c in group if words.get(c) is not None)
            if not alive:
                raise InsufficientParticipantsError(f"no client of group {list(group)} answered")
            total = np.float64 if shape.dtype.kind == "f" else shape.dtype
            sums.append(np.sum(np.stack([words[c] for c in alive]).astype(total), axis=0))
            survivors.append(alive)
        return sums, survivors

    def _encoded_shape(self, group_size: int) -> np.ndarray:
        """An encoded zero update: the length and dtype every client's input has in a group of ``group_size``."""
        return self.pipeline.encode(Update(0, np.zeros(self.dimension, np.float32)), relative_weight=1.0,
                                    rng=np.random.default_rng(0), group_size=group_size).values

    def _secagg(self, groups, session: bytes, round_: int, opened: dict[int, dict], send,
                context: bytes) -> tuple[list, list]:
        p = self.pipeline
        servers, down = {}, {}
        for index, group in enumerate(groups):
            roster = roster_of(group)
            shape = self._encoded_shape(len(roster))
            server = SecAggServer(instance=Instance(session, round_, index, roster, context),
                                  params=p.protocol.params(len(roster)),
                                  directory=self.directory, length=shape.size, dtype=shape.dtype)
            servers[index] = server
            down.update(server.receive_advertise({c: opened[c]["payload"] for c in group if c in opened}))
        results: dict[int, Any] = {}
        for stage, receive in zip(_STAGES, _RECEIVE, strict=True):
            replies = send({c: pack("stage", stage=stage, payload=msg) for c, msg in down.items()})
            down = {}
            for index, group in enumerate(groups):
                out = receive(servers[index], {c: replies[c]["payload"] for c in group if c in replies})
                if stage == _STAGES[-1]:
                    results[index] = out
                else:
                    down.update(out)
        return [results[i] for i in range(len(groups))], [servers[i].survivors for i in range(len(groups))]


def _vector(reply: dict, like: np.ndarray) -> np.ndarray | None:
    """A plaintext reply's vector if it has ``like``'s dtype and length, else None."""
    if reply.get("dtype") != str(like.dtype) or len(reply["payload"]) != like.size * like.dtype.itemsize:
        return None
    return np.frombuffer(reply["payload"], dtype=like.dtype.newbyteorder("<")).astype(like.dtype)
