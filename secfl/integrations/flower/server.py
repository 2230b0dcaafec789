"""The server side of secfl over Flower: ``FlowerRounds`` drives secfl's engine round through a Flower ``Grid``.

One round: the engine samples clients and runs its hooks as always; the model goes to the sampled nodes in a
``train`` message; each node's ``secfl_mod`` keeps the update and replies with its metrics; then every
protocol stage is one ``send_and_receive`` to the nodes of all groups at once (``RemoteServer``). A node
that does not answer in time (killed, crashed) is a dropout from that stage on: the protocol recovers as in
the embedded engine while each group keeps its threshold. Everything after the sums (decoding, the robust
rule over group means, the server step, the privacy ledger, ``metrics.jsonl``) is the embedded engine's.

Supported: methods whose clients send model deltas without per-client server-side work (``fedavg``), any
stages, grouping and aggregator, plaintext / SecAgg / SecAgg+; not (yet) attacks, DP-SGD clients, other
methods, the HE sum or ``client.mode = "gradient"``: they are refused with the reason.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid

from secfl import engine
from secfl import scenario as scenarios
from secfl.exceptions import ConfigurationError, ProtocolError
from secfl.fl.params import num_params
from secfl.integrations.flower.node import STATE, as_bytes, train_context
from secfl.remote import RemoteServer
from secfl.runs import RunDir
from secfl.scenario_pin import canonical_text

__all__ = ["FlowerRounds", "serve", "check_supported"]

_log = logging.getLogger("flwr")  # Flower's logger: shown by `flwr run --stream` and in the SuperLink's log


def check_supported(scenario: Any) -> None:
    """Raise ``ConfigurationError`` naming what a scenario uses that secfl over Flower does not run."""
    problems = []
    if scenario.method != "fedavg":
        problems.append(f"method {scenario.method!r} (fedavg only)")
    if scenario.attack is not None:
        problems.append("[attack]")
    if scenario.client.dp_sgd is not None or scenario.client.mode != "fedavg":
        problems.append("client.dp_sgd / client.mode = \"gradient\"")
    if scenario.protocol.get("kind") not in ("plaintext", "secagg", "secagg+"):
        problems.append(f"protocol {scenario.protocol.get('kind')!r} (plaintext, secagg, secagg+)")
    if scenario.build_aggregator().needs_reference:
        problems.append(f"aggregator {scenario.aggregator.get('kind')!r} (it needs the server's root data)")
    if problems:
        raise ConfigurationError("secfl over Flower does not run: " + "; ".join(problems))


class FlowerRounds:
    """The transport of ``engine.run`` over a Flower ``Grid``: nodes are clients by their ``partition-id``.

    Args:
        grid: the ``ServerApp``'s grid.
        scenario: the scenario (the nodes receive it at enrollment).
        timeout: seconds each stage waits for replies (a node that misses it is a dropout).
        reproducible: seed the clients' encoding from the round's stream (``RemoteServer``): a simulation
            setting that makes a run equal the embedded engine's; off in a deployment.
    """

    def __init__(self, grid: Grid, scenario: Any, *, timeout: float = 120.0, reproducible: bool = False) -> None:
        check_supported(scenario)
        self.grid, self.timeout = grid, timeout
        self.text = canonical_text(scenario)  # what the nodes get (the noise solved once, here)
        self.scenario = scenarios.validate(json.loads(self.text))
        self.pipeline = self.scenario.build_pipeline()
        self.node_of: dict[int, int] = {}
        self.server: RemoteServer | None = None
        self.reproducible = reproducible
        if not reproducible and not self.pipeline.uniform and self.pipeline.weight_cap is None:
            raise ConfigurationError("deployed nodes weigh themselves: set client.weight_cap in the scenario (a "
                                     "public bound on a client's example count; 1 weighs every client equally)")
        self.errors: list[str] = []  # the nodes' error replies, newest last (for the log and the tests)

    def enroll(self, model: Any, wait: float = 60.0) -> None:
        """Wait for ``data.num_clients`` nodes and register each one's identity. The enrollment replies get
        ``wait`` seconds too (at least the stage timeout): a deployed node's first message of a run is a cold
        start (it installs the app and starts a process that imports it)."""
        want, start = self.scenario.data.num_clients, time.monotonic()
        while len(list(self.grid.get_node_ids())) < want and time.monotonic() - start < wait:
            time.sleep(0.2)
        nodes = list(self.grid.get_node_ids())
        self.server = RemoteServer(self.pipeline, num_params(model), reproducible=self.reproducible)
        content = RecordDict({STATE: ConfigRecord({"scenario": self.text})})
        replies = self._send({node: content for node in nodes}, "query.secfl_enroll", max(self.timeout, wait))
        for node, reply in replies.items():
            try:
                cid = self.server.enroll(as_bytes(reply[STATE]["enrollment"]))
            except (ProtocolError, KeyError, TypeError, ValueError) as error:  # that node is not enrolled
                self._error(f"enrollment of node {node}: {type(error).__name__} {error}")
                continue
            if cid in self.node_of and self.node_of[cid] != node:
                raise ConfigurationError(f"two nodes claim partition-id {cid}")
            self.node_of[cid] = node
        missing = sorted(set(range(want)) - set(self.node_of))
        if missing and self.errors:
            raise ConfigurationError(f"nodes failed to enroll: {self.errors[-1]}")
        if missing:
            raise ConfigurationError(f"no node enrolled as client(s) {missing[:10]} within {wait:.0f} s; start one "
                                     f"SuperNode per client with --node-config \"partition-id=N\" (0..{want - 1})")

    def _send(self, contents: Mapping[int, RecordDict], kind: str, timeout: float | None = None
              ) -> dict[int, RecordDict]:
        messages = [Message(c, dst_node_id=node, message_type=kind) for node, c in contents.items()]
        replies = self.grid.send_and_receive(messages, timeout=self.timeout if timeout is None else timeout)
        out = {}
        for reply in replies:
            if reply.has_error():  # a node that failed this step is a dropout; say why in the log
                self._error(f"{kind} node {reply.metadata.src_node_id}: {reply.error.reason}")
            elif reply.metadata.src_node_id in contents:  # only the nodes asked
                out[reply.metadata.src_node_id] = reply.content
        return out

    def _error(self, text: str) -> None:
        self.errors.append(text)
        _log.warning("secfl: %s", text)

    def exchange(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        """Carry secure-sum requests to the clients' nodes; the replies of those that answered (a reply
        without the expected record is a dropout)."""
        cid_of = {node: cid for cid, node in self.node_of.items()}
        contents = {self.node_of[c]: RecordDict({STATE: ConfigRecord({"request": r})}) for c, r in requests.items()}
        out = {}
        for node, content in self._send(contents, "query.secfl").items():
            try:
                out[cid_of[node]] = as_bytes(content[STATE]["reply"])
            except (KeyError, TypeError, ValueError):
                self._error(f"query.secfl node {node}: a reply without secfl's record")
        return out

    def _train_replies(self, replies: Mapping[int, RecordDict]) -> dict[int, tuple[float, float, float]]:
        """Client -> (weight, loss, loss weight) of the well-formed train replies. A deployed node keeps its
        example count (its weight is inside the masked vector): then the weight is 1, a member of the round."""
        cid_of, out = {node: cid for cid, node in self.node_of.items()}, {}
        for node, content in replies.items():
            try:
                metrics = content["metrics"]
                weight = float(metrics.get("num-examples", 1.0))
                loss = float(metrics.get("loss", float("nan")))
                counted = float(metrics.get("loss-examples", metrics.get("num-examples", 1.0)))
                if not (math.isfinite(weight) and weight > 0 and math.isfinite(counted)):
                    raise ValueError("num-examples / loss-examples not a finite number > 0")
                if counted <= 0:  # no example behind the loss
                    loss, counted = float("nan"), 1.0
            except (KeyError, TypeError, ValueError) as error:
                self._error(f"train node {node}: a malformed reply ({error}): a dropout")
                continue
            out[cid_of[node]] = (weight, loss, counted)
        return out

    def __call__(self, setup: Any, ctx: Any, rng: np.random.Generator) -> tuple[Any, list[tuple[float, int]]]:
        """One round's updates and secure sum (``engine.run``'s transport)."""
        if self.server is None:
            self.enroll(ctx.model)
        arrays = ArrayRecord(numpy_ndarrays=[p.detach().cpu().numpy() for p in ctx.model.parameters()])
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({"server-round": ctx.round})})
        replies = self._send({self.node_of[c]: content for c in ctx.sampled}, "train")
        cid_of = {node: cid for cid, node in self.node_of.items()}
        leaked = sorted(cid_of[node] for node, c in replies.items() if c.array_records)
        if leaked:  # their update already left in the clear: not summed (one such node cannot stop the run)
            self._error(f"clients {leaked[:10]} sent their update in the clear (their ClientApp needs "
                        "mods=[secfl_mod], secfl.integrations.flower): dropped")
            replies = {node: c for node, c in replies.items() if not c.array_records}
            if not replies:
                raise ConfigurationError(f"round {ctx.round}: every node sent its update in the clear: their "
                                         "ClientApp needs mods=[secfl_mod] (secfl.integrations.flower)")
        trained = self._train_replies(replies)
        weights = {c: trained[c][0] for c in ctx.sampled if c in trained}
        if not weights:
            raise ProtocolError(f"round {ctx.round}: no sampled node returned an update")
        losses = [(loss, counted) for _, loss, counted in trained.values()]
        out = self.server.run_round(ctx.round, weights, rng=rng, exchange=self.exchange, reference=ctx.reference,
                                    context=train_context(content, self.text))
        summed = sorted(c for group in out.result.survivors for c in group)
        dropped = sorted(set(ctx.sampled) - set(summed))
        _log.info("secfl round %d: the secure sum holds %d of %d clients%s", ctx.round, len(summed), len(ctx.sampled),
                  f"; dropped out (no reply in time or an error): {dropped}" if dropped else "")
        return out, losses


def serve(grid: Grid, context: Context) -> dict[str, Any]:
    """A ``ServerApp`` main: run the scenario of ``run_config["scenario"]`` (a TOML path, or the scenario as
    JSON) into ``run_config["out"]`` (default ``runs/<name>``), with ``run_config["timeout"]`` seconds per stage."""
    source = str(context.run_config.get("scenario", ""))
    if not source:
        raise ConfigurationError("the ServerApp needs run config 'scenario' (a scenario TOML path)")
    spec = scenarios.validate(json.loads(source)) if source.lstrip().startswith("{") else scenarios.load(source)
    out = str(context.run_config.get("out", f"runs/{spec.name}"))
    rounds = FlowerRounds(grid, spec, timeout=float(context.run_config.get("timeout", 120.0)))
    return engine.run(spec, RunDir(out), transport=rounds)
