"""The node side of secfl over Flower against a malicious server: what ``secfl_mod`` refuses, what it keeps.

These call the mod with Flower's own ``Message`` and ``Context`` objects in this process (no SuperLink, no
Ray): the server is whoever writes the messages.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

from secfl import ConfigurationError, scenario  # noqa: E402
from secfl.integrations.flower import node  # noqa: E402
from secfl.scenario_pin import canonical_text, digest  # noqa: E402

SECURE = {
    "name": "node", "stages": [{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 65536.0}],
    "protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"}, "run": {"rounds": 2},
    "data": {"dataset": "digits", "num_clients": 4}, "model": {"kind": "mlp", "options": {"hidden": 8}},
    "client": {"weight_cap": 400.0},
}


def text_of(**changes) -> str:
    return canonical_text(scenario.validate({**json.loads(json.dumps(SECURE)), **changes}))


@pytest.fixture(autouse=True)
def task_identity(monkeypatch):
    """Flower's messages need the identity of the task that makes them (set by Flower in a real node)."""
    for name, value in (("_run_id", 1), ("_node_id", 7), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)
    monkeypatch.delenv(node.SIMULATION_ENV, raising=False)


def context(**config) -> Context:
    return Context(1, 7, {"partition-id": 0, **config}, RecordDict(), {})


def enroll(ctx: Context, text: str) -> bytes:
    """The node's enrollment reply to the server's scenario ``text``."""
    msg = Message(RecordDict({node.STATE: ConfigRecord({"scenario": text})}), dst_node_id=7,
                  message_type="query.secfl_enroll")
    return bytes(node.secfl_mod(msg, ctx, call_next=None).content[node.STATE]["enrollment"])


def test_a_node_enrolls_once_per_run_and_refuses_another_scenario():
    ctx, first = context(), text_of()
    assert enroll(ctx, first) == enroll(ctx, first)  # the same scenario again: the same identity
    weaker = text_of(stages=[{"kind": "l2clip", "norm": 500.0}, {"kind": "quantize", "scale": 65536.0}])
    with pytest.raises(ConfigurationError, match="another scenario"):
        enroll(ctx, weaker)
    assert ctx.state.config_records[node.STATE]["scenario"] == first


def test_a_deployed_node_refuses_plaintext_unless_its_config_allows_it():
    plain = text_of(protocol={"kind": "plaintext"})
    with pytest.raises(ConfigurationError, match="plaintext: refused"):
        enroll(context(), plain)
    assert enroll(context(**{"secfl-allow-plaintext": "true"}), plain)


def test_a_pinned_node_takes_only_its_scenario():
    text = text_of()
    assert enroll(context(**{"secfl-scenario-sha256": digest(text)}), text)
    with pytest.raises(ConfigurationError, match="does not match"):
        enroll(context(**{"secfl-scenario-sha256": digest(text)}), text_of(run={"rounds": 3}))


def test_a_deployed_node_needs_a_weight_cap():
    with pytest.raises(ConfigurationError, match="weight_cap"):
        enroll(context(), text_of(client={}))


def test_a_deployed_node_keeps_its_example_count():
    """The train reply carries the app's other metrics, not num-examples / loss-examples (the weight)."""
    ctx = context()
    enroll(ctx, text_of())
    arrays = [np.zeros((3, 2), np.float32), np.zeros(2, np.float32)]
    msg = Message(RecordDict({"arrays": ArrayRecord(numpy_ndarrays=arrays),
                              "config": ConfigRecord({"server-round": 1})}), dst_node_id=7, message_type="train")

    def app(message, _ctx):
        new = [a + 0.1 for a in arrays]
        return Message(RecordDict({"arrays": ArrayRecord(numpy_ndarrays=new), "metrics": MetricRecord(
            {"num-examples": 321, "loss-examples": 321, "loss": 0.5})}), reply_to=message)

    reply = node.secfl_mod(msg, ctx, call_next=app)
    assert not reply.content.array_records
    assert dict(reply.content["metrics"]) == {"loss": 0.5}


# ---------------------------------------------------------------- the server side: malformed replies


class Replies:
    """A grid whose nodes 1..4 answer every message with ``content(node, message)`` (None: no answer)."""

    def __init__(self, content) -> None:
        self.content = content

    def get_node_ids(self):
        return [1, 2, 3, 4]

    def send_and_receive(self, messages, timeout=None):
        out = []
        for msg in messages:
            content = self.content(msg.metadata.dst_node_id, msg)
            if content is not None:
                out.append(Message(content, reply_to=msg))  # from the node the message went to
        return out


def rounds_over(grid) -> object:
    from secfl.integrations.flower.server import FlowerRounds

    rounds = FlowerRounds(grid, scenario.validate(json.loads(text_of())), timeout=1.0)
    rounds.node_of = {c: c + 1 for c in range(4)}
    return rounds


@pytest.mark.parametrize("bad", [RecordDict(), RecordDict({node.STATE: ConfigRecord({"other": b"x"})}),
                                 RecordDict({node.STATE: ConfigRecord({"reply": 3})})],
                         ids=["no record", "no reply", "reply not bytes"])
def test_a_malformed_protocol_reply_is_a_dropout_not_a_crash(bad):
    good = RecordDict({node.STATE: ConfigRecord({"reply": b"ok"})})
    rounds = rounds_over(Replies(lambda n, msg: bad if n == 2 else good))
    assert rounds.exchange({0: b"r", 1: b"r", 2: b"r"}) == {0: b"ok", 2: b"ok"}
    assert len(rounds.errors) == 1 and "node 2" in rounds.errors[0]


@pytest.mark.parametrize("metrics", [{"num-examples": float("nan")}, {"num-examples": -3}, {"num-examples": 0},
                                     {"loss-examples": float("inf")}, None], ids=["nan", "negative", "zero",
                                                                                  "inf loss examples", "no metrics"])
def test_a_malformed_train_reply_is_a_dropout_not_a_crash(metrics):
    rounds = rounds_over(None)
    good = RecordDict({"metrics": MetricRecord({"num-examples": 10, "loss": 0.5})})
    bad = RecordDict({"metrics": MetricRecord(metrics)}) if metrics is not None else RecordDict()
    assert rounds._train_replies({1: good, 2: bad}) == {0: (10.0, 0.5, 10.0)}
    assert len(rounds.errors) == 1


def test_a_deployed_nodes_reply_without_its_weight_counts_as_one():
    rounds = rounds_over(None)
    assert rounds._train_replies({3: RecordDict({"metrics": MetricRecord({"loss": 0.25})})}) == {2: (1.0, 0.25, 1.0)}


def test_a_malformed_enrollment_is_skipped_and_reported():
    """Node 3 answers garbage: it is not enrolled; the others are, and the run says which clients are missing."""
    def answer(n, msg):
        if n == 3:
            return RecordDict({node.STATE: ConfigRecord({"enrollment": b"garbage"})})
        return node.secfl_mod(msg, context_of[n], call_next=None).content

    context_of = {n: Context(1, n, {"partition-id": n - 1}, RecordDict(), {}) for n in range(1, 5)}
    rounds = rounds_over(Replies(answer))
    rounds.node_of = {}
    with pytest.raises(ConfigurationError, match="nodes failed to enroll: enrollment of node 3"):
        rounds.enroll(torch.nn.Linear(2, 1), wait=0.0)
    assert rounds.node_of == {0: 1, 1: 2, 3: 4} and "node 3" in rounds.errors[0]



def test_the_train_binding_covers_arrays_names_config_and_the_scenario():
    """Nodes told anything different (a value, an array's name, a config entry such as lr, the scenario) have
    different contexts, so they are never in one sum (the review's F2-F4)."""
    arrays = {"0.weight": np.zeros((2, 3), np.float32), "0.bias": np.ones(2, np.float32)}

    def content(arrays=arrays, **config):
        record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        return RecordDict({"arrays": record, "config": ConfigRecord({"server-round": 1, **config})})

    base = node.train_context(content(), text_of())
    assert base == node.train_context(content(), text_of())
    resent = RecordDict({"arrays": content()["arrays"], "config": ConfigRecord({"server-round": 7})})
    assert node.train_context(resent, text_of()) == base  # the round is not in it: a re-sent model is the same input
    swapped = {"0.weight": arrays["0.weight"], "0.bias": arrays["0.bias"] * 2}
    renamed = dict(zip(["0.bias", "0.weight"], arrays.values(), strict=True))  # same order of values, names swapped
    others = [node.train_context(content(swapped), text_of()), node.train_context(content(renamed), text_of()),
              node.train_context(content(lr=0.0), text_of()), node.train_context(content(b=b"x"), text_of()),
              node.train_context(content(b="78"), text_of()),
              node.train_context(content(), text_of(client={"weight_cap": 1e9}))]
    assert len({base, *others}) == 1 + len(others)


def test_a_node_refuses_a_protocol_it_cannot_run_and_a_non_bytes_request():
    with pytest.raises(ConfigurationError, match="a node runs secagg"):
        enroll(context(), text_of(protocol={"kind": "he"}, stages=[{"kind": "l2clip", "norm": 5.0},
                                                                  {"kind": "quantize", "scale": 65536.0}]))
    ctx = context()
    enroll(ctx, text_of())
    msg = Message(RecordDict({node.STATE: ConfigRecord({"request": 10**12})}), dst_node_id=7,
                  message_type="query.secfl")
    with pytest.raises(ConfigurationError, match="expected bytes"):
        node.secfl_mod(msg, ctx, call_next=None)


def test_state_dir_keeps_the_identity_and_record_across_runs_and_peers_are_pinned(tmp_path):
    """A new Flower run gives the node a fresh context.state; with secfl-state-dir its identity (and contribution
    record) come back from the node's own file (0600). secfl-peers pins the peers' keys: a directory from the
    server that disagrees is refused."""
    config = {"secfl-state-dir": str(tmp_path / "state")}
    first = enroll(context(**config), text_of())
    assert enroll(context(**config), text_of()) == first  # another run (fresh context.state): same identity
    assert enroll(context(), text_of()) != first  # without the directory: a new identity per run
    path = tmp_path / "state" / "secfl-node-0.state"
    assert path.stat().st_mode & 0o777 == 0o600 and (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps({"1": "00" * 32}))
    ctx = context(**config, **{"secfl-peers": str(peers)})
    assert node._client(ctx, text_of()).pinned == {1: b"\x00" * 32}
    peers.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="secfl-peers"):
        enroll(context(**{"secfl-peers": str(peers)}), text_of())
