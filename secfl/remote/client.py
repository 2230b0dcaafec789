"""``RemoteClient``: one secure-sum client whose whole state is bytes between calls.

Threat model: the server (and the transport) may be malicious. The client's long-term Ed25519 key never
leaves it; every protocol message is checked by ``SecAggClient`` (bound instance, signatures, a roster size
the client accepts); an input is masked at most once: the contribution record (part of the state) names it
by the model it was computed from (``set_update(context=...)``), else by its bytes, never by anything the
server sends, so a server that re-sends a model under a new round or task gets no second sum of it. The
state holds secrets (the signing key, the round's keys and shares): keep it where the client keeps its key.
The key directory arrives from the server at the start of a round: against a malicious server that can
forge the directory, pin the peers' keys out of band (``pinned``), else the server is trusted for keys.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from secfl.exceptions import ConfigurationError, ProtocolError, ProtocolIntegrityError
from secfl.hazmat import crypto
from secfl.hazmat.randomness import OS_RANDOM
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_client import SecAggClient, input_key
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_record import ContributionRecord
from secfl.protocols.secagg_state import dump_client, load_client
from secfl.remote.wire import pack, unpack
from secfl.types import Update

__all__ = ["RemoteClient"]


class RemoteClient:
    """Client ``client_id`` of the secure sums a ``RemoteServer`` runs with ``pipeline`` (the scenario's).

    Args:
        client_id: this client's id (its data partition).
        pipeline: the checked pipeline (its stages encode the input, its protocol is the secure sum).
        state: what ``state()`` returned last time (None: a new client with a fresh identity).
        pinned: the peers' public keys known out of band (then a directory from the server must agree).
        accept_sizes: the group sizes this client accepts (default: those the pipeline's grouping makes).
        simulation: take the relative weight and the encoding seed the server sends
            (``RemoteServer(reproducible=True)``: a simulation that must equal the embedded engine, where one
            party runs everything). Off by default: a deployed client weighs itself (``pipeline.relative_weight``:
            uniform, or its own weight over the public ``weight_cap``) and rounds and adds noise with its own OS
            randomness, so no server can choose its weight or know its noise.

    Raises:
        ConfigurationError: a deployed client (not ``simulation``) of a pipeline whose weights are neither
            uniform nor capped: its relative weight would depend on the other clients', which only the server
            knows (and a server that chose each client's weight could single one out of the sum).
    """

    def __init__(self, client_id: int, pipeline: Any, *, state: bytes | None = None,
                 pinned: dict[int, bytes] | None = None, accept_sizes: tuple[int, int] | None = None,
                 simulation: bool = False) -> None:
        self.id, self.pipeline, self.pinned = int(client_id), pipeline, dict(pinned or {})
        self.simulation = simulation
        if pipeline.protocol.secure and not pipeline.protocol.binds_model:
            raise ConfigurationError(f"{pipeline.protocol!r}: only plaintext, secagg and secagg+ run across processes")
        if not simulation and not pipeline.uniform and pipeline.weight_cap is None:
            raise ConfigurationError(
                "a deployed client weighs itself: give the pipeline a public weight_cap (scenario: client.weight_cap, "
                "e.g. the largest client's example count; weight_cap = 1 weighs every client equally)")
        n = pipeline.clients_per_round
        self.accept = accept_sizes or (pipeline.grouping.min_group_size(pipeline.min_clients),
                                       pipeline.grouping.max_group_size(n))
        if state is None:
            self.signing_key, public = crypto.ed25519_keypair(OS_RANDOM)
            self.s: dict[str, Any] = {"id": self.id, "public": public.hex(), "spent": [], "update": None,
                                      "secagg": None, "params_n": None, "directory": {}}
        else:
            try:
                self.s = json.loads(bytes(state))
                self.signing_key = bytes.fromhex(self.s.pop("signing_key"))
                if self.s["id"] != self.id:
                    raise ValueError
            except (ValueError, TypeError, KeyError, AttributeError):
                raise ProtocolIntegrityError() from None

    @property
    def public_key(self) -> bytes:
        """This client's long-term Ed25519 public key (what peers pin)."""
        return bytes.fromhex(self.s["public"])

    def state(self) -> bytes:
        """Everything this client must keep until its next call (secret: see the module doc)."""
        return json.dumps({**self.s, "signing_key": self.signing_key.hex()}, separators=(",", ":")).encode()

    def enroll(self) -> bytes:
        """The message that registers this client's long-term public key with the server."""
        return pack("enroll", client=self.id, public_key=bytes.fromhex(self.s["public"]))

    def set_update(self, round_: int, values: np.ndarray, weight: float, *, context: bytes = b"") -> None:
        """The float vector this client contributes to round ``round_``'s sum, and its weight.

        ``context``: ``secfl.protocols.binding.model_context`` of the model this client received (and trained
        on), computed by the client; the server must bind the same (``RemoteServer.run_round(context=...)``),
        so clients that received different models cannot complete one sum together. Empty: unbound.
        """
        values = np.asarray(values, dtype=np.float32)
        if values.ndim != 1 or not np.all(np.isfinite(values)) or not weight > 0:
            raise ConfigurationError(f"client {self.id}: the update must be a finite 1-D vector with weight > 0")
        if not isinstance(context, bytes) or len(context) not in (0, 32):
            raise ConfigurationError(f"client {self.id}: context must be empty or binding.model_context's 32 bytes")
        self.s["update"] = [int(round_), values.tobytes().hex(), float(weight), context.hex()]

    def handle(self, request: bytes) -> bytes:
        """The reply to one server request: a round's opening (encode the input; the first protocol message)
        or the next protocol stage.

        A refused request ends this client's current instance (it answers no later stage of it, as
        ``SecAggClient`` after a refusal); a refused open encodes nothing. Keep ``state()`` after a refusal too.

        Raises:
            ProtocolIntegrityError: a request this client must refuse (one opaque error, whatever the cause).
        """
        try:
            return self._handle(request)
        except (ProtocolError, ConfigurationError):  # ConfigurationError: a field the protocol refuses
            self.s["secagg"] = None  # as SecAggClient's ABORTED: nothing more in this instance
            raise ProtocolIntegrityError() from None

    def _handle(self, request: bytes) -> bytes:
        fields = unpack(request, "open", "stage")
        if fields["kind"] == "open":
            return self._open(fields)
        stage = fields.get("stage")
        step = _STEPS.get(stage) if isinstance(stage, str) else None
        if step is None:
            raise ProtocolIntegrityError()
        client = self._restore()
        reply = step(client, fields.get("payload"))
        self.s["secagg"] = dump_client(client).hex()
        return pack("reply", payload=reply)

    def _directory(self) -> KeyDirectory:
        return KeyDirectory({int(c): bytes.fromhex(k) for c, k in self.s["directory"].items()})

    def _restore(self) -> SecAggClient:
        if self.s["secagg"] is None:
            raise ProtocolIntegrityError()
        record = _Spending(self.s)
        return load_client(bytes.fromhex(self.s["secagg"]), params=self.pipeline.protocol.params(self.s["params_n"]),
                           signing_key=self.signing_key, directory=self._directory(), record=record)

    def _open(self, f: dict[str, Any]) -> bytes:
        """Encode this round's input with the server's public round parameters; start the protocol."""
        secure = self.pipeline.protocol.secure
        try:  # every field is checked before the input is encoded (ConfigurationError is a ValueError)
            round_, roster = _integer(f["round"]), tuple(_integer(c) for c in _listed(f["roster"]))
            directory = {int(c): bytes.fromhex(k) for c, k in _mapping(f.get("directory", {})).items()}
            KeyDirectory({**directory, **self.pinned})  # 32-byte keys, checked before anything is spent
            if secure:
                context = bytes.fromhex(self.s["update"][3]) if self.s["update"] else b""
                instance = Instance(f["session"], round_, _integer(f["group"]), roster, context)
            relative, rng = self._weight_and_randomness(f)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
            raise ProtocolIntegrityError() from None
        update = self.s["update"]
        if (update is None or update[0] != round_ or self.id not in roster
                or not self.accept[0] <= len(roster) <= self.accept[1]):
            raise ProtocolIntegrityError()
        if any(self.pinned.get(c, k) != k for c, k in directory.items()):
            raise ProtocolIntegrityError()  # the server's directory disagrees with a pinned key
        values = np.frombuffer(bytes.fromhex(update[1]), dtype=np.float32)
        if secure:  # the input's name in the contribution record: only what the client holds, nothing the server
            # sends (a server-chosen task or round would re-key the same input into a second sum). Bound: the
            # model it was computed from, so an update from a model already contributed to is never masked
            # again; unbound: the update's own bytes.
            key = input_key("remote-input", self.id, bytes.fromhex(update[3]) or hashlib.sha256(values).digest())
        if relative is None:  # the client weighs itself: the server cannot choose it
            relative = self.pipeline.relative_weight(update[2], update[2])
        words = self.pipeline.encode(Update(self.id, values, weight=update[2]), relative_weight=relative, rng=rng,
                                     group_size=len(roster)).values
        self.s["update"] = None  # an input is encoded once
        if not secure:
            return pack("reply", payload=np.ascontiguousarray(words).astype(words.dtype.newbyteorder("<")).tobytes(),
                        dtype=str(words.dtype))
        self.s["directory"] = {str(c): k.hex() for c, k in {**directory, **self.pinned}.items()}
        params = self.pipeline.protocol.params(len(roster))
        client = SecAggClient(self.id, instance=instance, params=params, values=words, signing_key=self.signing_key,
                              directory=self._directory(), record=_Spending(self.s), input_key=key)
        reply = client.advertise_keys()
        self.s["params_n"], self.s["secagg"] = len(roster), dump_client(client).hex()
        return pack("reply", payload=reply)

    def _weight_and_randomness(self, f: dict[str, Any]) -> tuple[float | None, np.random.Generator]:
        """A simulation takes the server's relative weight and encoding seed (so that it equals the embedded
        engine); a deployed client ignores both: None (it weighs itself) and the OS's randomness."""
        if not self.simulation:
            return None, np.random.default_rng()
        relative, seed = f["relative_weight"], f.get("seed")
        if isinstance(relative, bool) or not isinstance(relative, (int, float)) or not 0 < relative <= 1:
            raise ValueError
        if seed is None:
            return float(relative), np.random.default_rng()
        entropy, spawn_key = seed
        entropy = [_integer(e) for e in _listed(entropy)] if isinstance(entropy, list) else _integer(entropy)
        return float(relative), np.random.default_rng(np.random.SeedSequence(
            entropy, spawn_key=tuple(_integer(k) for k in _listed(spawn_key))))


def _integer(value: Any) -> int:
    """A JSON integer (not a bool, a float or a string)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    return value


def _listed(value: Any) -> list:
    if not isinstance(value, list):
        raise TypeError
    return value


def _mapping(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError
    return value


_STEPS = {"share_keys": SecAggClient.share_keys, "check_shares": SecAggClient.check_shares,
          "masked_input": SecAggClient.masked_input, "consistency_check": SecAggClient.consistency_check,
          "unmask": SecAggClient.unmask, "convict": SecAggClient.convict}


class _Spending(ContributionRecord):
    """The client's contribution record, kept in its state: every spent key is written there."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        for key in state["spent"]:
            ContributionRecord.spend(self, bytes.fromhex(key))
        self._state = state

    def spend(self, key: bytes) -> None:
        super().spend(key)
        self._state["spent"].append(key.hex())
