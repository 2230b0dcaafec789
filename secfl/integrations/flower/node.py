"""The node side of secfl over Flower: ``secfl_mod``.

Messages the mod handles (the ``ServerApp`` side is ``secfl.integrations.flower.server``):
- ``query.secfl_enroll`` (``ConfigRecord "secfl"``: ``scenario``): makes the node's long-term identity on
  first use and replies with its enrollment (``client`` = the node config's ``partition-id``).
- ``train``: passed to the app (``call_next``). The app replies as usual: ``ArrayRecord "arrays"`` (its new
  weights, in the order it received them) or ``"update"`` (the update itself), and ``MetricRecord
  "metrics"`` with ``num-examples``. The mod keeps the update on the node and forwards only the other
  metrics (``num-examples`` is the client's weight: it travels inside the masked vector).
- ``query.secfl`` (``request``): one secure-sum request; the reply comes from ``RemoteClient.handle``.

The node's secfl state (its signing key, its protocol state, the inputs it contributed) lives in
``context.state``, on the node: it never leaves it.

Threat model: the server (SuperLink and ServerApp) may be malicious. The node computes its own weight
(``client.weight_cap``) and noise; it binds every sum to everything its ``train`` message carried and to the
scenario (``train_context``); it takes the first scenario of a run and refuses any other; it refuses a
plaintext protocol unless its node config allows it; with ``secfl-scenario-sha256`` in its node config it
takes only that scenario (without the pin the server chooses the scenario's parameters, such as the noise
and the group sizes). Against a malicious server a deployment also needs, in each node's config:
``secfl-peers`` (the peers' public keys, a JSON file; without it the server hands out the keys and can stand
in for every peer of a node) and ``secfl-state-dir`` (a directory where the node keeps its identity and
contribution record across runs; without it both last one Flower run, so a server could start a new run and
have the same model's update summed again). Inside the protocol, ``RemoteClient``'s checks hold.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from secfl import scenario as scenarios
from secfl.exceptions import ConfigurationError
from secfl.protocols.binding import model_context
from secfl.remote import RemoteClient
from secfl.runs import atomic_write
from secfl.scenario_pin import digest

__all__ = ["secfl_mod", "secure", "pipeline_of", "client_id"]

STATE = "secfl"
_log = logging.getLogger("flwr")
SIMULATION_ENV = "SECFL_FLOWER_SIMULATION"  # "1" in the nodes of secfl's own simulation (accepts seeds)
WEIGHT_METRICS = ("num-examples", "loss-examples")  # a client's weight: kept on a deployed node
ROUND_KEY = ("config", "config", "server-round")  # the round in a train message (bound by the instance instead)


@functools.lru_cache(maxsize=4)
def pipeline_of(text: str) -> Any:
    """The checked pipeline of a scenario sent as JSON (built once per process)."""
    return scenarios.validate(json.loads(text)).build_pipeline()


def client_id(context: Context) -> int:
    """This node's client id: its ``partition-id`` (set by Flower's simulation, or ``--node-config``)."""
    if "partition-id" not in context.node_config:
        raise ConfigurationError("a secfl node needs node config partition-id (flower-supernode --node-config "
                                 "\"partition-id=N\")")
    return int(context.node_config["partition-id"])


def _simulation() -> bool:
    """Only secfl's own simulation (``simulate()`` sets this in the nodes' environment) takes the server's
    relative weights and seeds, shows the server each client's example count and may run in plaintext."""
    return os.environ.get(SIMULATION_ENV) == "1"


def _client(context: Context, text: str) -> RemoteClient:
    saved, path = context.state.config_records.get(STATE), _state_file(context)
    state = path.read_bytes() if path is not None and path.exists() else saved["state"] if saved else None
    return RemoteClient(client_id(context), pipeline_of(text), state=state, simulation=_simulation(),
                        pinned=_peers(context))


def _save(context: Context, client: RemoteClient, text: str) -> None:
    state, path = client.state(), _state_file(context)
    if path is not None:  # the node's identity and contribution record outlive the run (Flower's state does not)
        atomic_write(path, state)
    context.state.config_records[STATE] = ConfigRecord({"state": state, "scenario": text})


def _state_file(context: Context) -> Path | None:
    """``<secfl-state-dir>/secfl-node-<partition-id>.state`` if the node config names a directory (created
    0700; the file, written atomically, is 0600: it holds the signing key)."""
    directory = context.node_config.get("secfl-state-dir")
    if directory is None:
        return None
    path = Path(str(directory)).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path / f"secfl-node-{client_id(context)}.state"


def _peers(context: Context) -> dict[int, bytes]:
    """The peers' public keys pinned by the node config ``secfl-peers`` (a JSON file ``{"<partition-id>":
    "<hex key>"}``, e.g. collected from the nodes' logs), or none."""
    path = context.node_config.get("secfl-peers")
    if path is None:
        return {}
    try:
        data = json.loads(Path(str(path)).expanduser().read_text(encoding="utf-8"))
        peers = {int(c): bytes.fromhex(k) for c, k in data.items()}
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise ConfigurationError(f"node config secfl-peers={path!r}: not a JSON file of partition-id -> hex "
                                 f"public key ({type(error).__name__})") from None
    if any(len(k) != 32 for k in peers.values()):
        raise ConfigurationError(f"node config secfl-peers={path!r}: a public key is 32 bytes (64 hex digits)")
    return peers


def _reply(msg: Message, **fields: Any) -> Message:
    return Message(RecordDict({STATE: ConfigRecord(fields)}), reply_to=msg)


def train_context(content: RecordDict, text: str) -> bytes:
    """The model binding of a ``train`` message: every array record (names, dtypes, shapes, values), every
    config and metric record (sorted), and the scenario's digest. The node computes it from what it received,
    the server from what it sent: nodes told anything different (another model, learning rate or scenario)
    are never in one sum. The round number is left out (the instance binds it): the context also names the
    input in the contribution record, so the same model sent again in another round is never summed again."""
    arrays = {f"{name}/{key}": array.numpy() for name, record in sorted(content.array_records.items())
              for key, array in record.items()}
    records = {kind: {name: sorted((k, _plain(v)) for k, v in record.items() if (kind, name, k) != ROUND_KEY)
                      for name, record in sorted(group.items())}
               for kind, group in (("config", content.config_records), ("metrics", content.metric_records))}
    config = json.dumps({"records": records, "scenario": digest(text)}, sort_keys=True, separators=(",", ":"))
    return model_context(arrays, config=config.encode())


def as_bytes(value: Any) -> bytes:
    """A record's bytes value, checked (``bytes(n)`` of an int would allocate n zero bytes)."""
    if not isinstance(value, bytes):
        raise ConfigurationError(f"expected bytes in secfl's record, got {type(value).__name__}")
    return value


def _plain(value: Any) -> Any:
    """A record value as JSON (bytes as hex, tagged so that they never equal a string)."""
    if isinstance(value, (bytes, bytearray)):
        return {"hex": bytes(value).hex()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _check_scenario(text: str, context: Context) -> None:
    """The node's own checks of the scenario the server sends (a malicious server would send a weaker one):
    - the first scenario of a run is the only one (no re-enrollment with another);
    - if the node config pins ``secfl-scenario-sha256`` (``secfl digest SCENARIO.toml``), the scenario must
      have that digest;
    - a deployed node refuses a protocol that is not a secure sum unless ``secfl-allow-plaintext = true``."""
    saved = context.state.config_records.get(STATE)
    if saved is not None and str(saved["scenario"]) != text:
        raise ConfigurationError("this node already enrolled with another scenario in this run: refused")
    pin = context.node_config.get("secfl-scenario-sha256")
    if pin is not None and str(pin).lower() != digest(text):
        raise ConfigurationError("the server's scenario does not match this node's secfl-scenario-sha256: refused")
    allow_plain = str(context.node_config.get("secfl-allow-plaintext", "false")).lower() == "true"
    protocol = pipeline_of(text).protocol
    if protocol.secure and not protocol.binds_model:
        raise ConfigurationError(f"the server's scenario uses {protocol.name}: a node runs secagg, secagg+ or "
                                 "(if allowed) plaintext")
    if not (_simulation() or allow_plain or protocol.secure):
        raise ConfigurationError("the server's scenario sends updates in plaintext: refused (set node config "
                                 "secfl-allow-plaintext=true to allow it)")


def _enroll(msg: Message, context: Context) -> Message:
    text = str(msg.content[STATE]["scenario"])
    _check_scenario(text, context)
    client = _client(context, text)
    _save(context, client, text)
    enrollment = client.enroll()
    _log.info("secfl node %d public key %s (peers pin it with secfl-peers)", client.id, client.public_key.hex())
    return _reply(msg, enrollment=enrollment)


def _query(msg: Message, context: Context) -> Message:
    text = str(context.state.config_records[STATE]["scenario"])
    client = _client(context, text)
    try:
        reply = client.handle(as_bytes(msg.content[STATE]["request"]))
    finally:  # a refusal ends the client's part in the round: that too must survive until the next message
        _save(context, client, text)
    return _reply(msg, reply=reply)


def secure(app: Any) -> Any:
    """Register secfl's two protocol queries (enrollment and secure-sum stages) on a ``ClientApp`` built with
    ``mods=[secfl_mod]``; returns the app: ``app = secure(ClientApp(mods=[secfl_mod]))``."""
    app.query("secfl_enroll")(_enroll)
    app.query("secfl")(_query)
    return app


def secfl_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """A Flower client mod: secfl's secure-sum client around any ``ClientApp`` (see the module doc)."""
    kind = msg.metadata.message_type
    if kind == "query.secfl_enroll":
        return _enroll(msg, context)
    if kind == "query.secfl":
        return _query(msg, context)
    if not kind.startswith("train"):
        return call_next(msg, context)
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    round_ = int(msg.content["config"]["server-round"])
    if "update" in reply.content.array_records:
        update = np.concatenate([a.reshape(-1) for a in reply.content["update"].to_numpy_ndarrays()])
    else:
        new = reply.content["arrays"].to_numpy_ndarrays()
        old = msg.content["arrays"].to_numpy_ndarrays()
        if [a.shape for a in new] != [a.shape for a in old]:
            raise ConfigurationError(f"the ClientApp replied with arrays of shapes {[a.shape for a in new][:5]}..., "
                                     f"not those it received ({[a.shape for a in old][:5]}...): reply the trained "
                                     "weights in the order received")
        update = np.concatenate([(n.astype(np.float32) - o.astype(np.float32)).reshape(-1)
                                 for n, o in zip(new, old, strict=True)])
    metrics = dict(reply.content["metrics"])
    text = str(context.state.config_records[STATE]["scenario"])
    client = _client(context, text)
    client.set_update(round_, update, float(metrics["num-examples"]), context=train_context(msg.content, text))
    _save(context, client, text)
    if not _simulation():  # the weight travels only inside the masked vector: the server never sees it
        metrics = {k: v for k, v in metrics.items() if k not in WEIGHT_METRICS}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)  # no update leaves
