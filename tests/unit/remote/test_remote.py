"""The remote layer (``secfl.remote``): ``RemoteClient`` / ``RemoteServer`` exchanging only bytes.

Every client here lives only as the bytes of its ``state()`` between calls (a fresh ``RemoteClient`` per
request), as in a deployment where a process does not survive between messages. The exchange lets any
client exception other than ``ProtocolIntegrityError`` (the one refusal ``handle`` documents) fail the test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secfl import (Buckets, ConfigurationError, DropoutSchedule, L2Clip, OneGroup, Pipeline, Plaintext, ProtocolError,
                   ProtocolIntegrityError, Quantize, RemoteClient, RemoteServer, SecAgg, SecAggPlus, Update,
                   model_context)
from secfl.hazmat import crypto
from secfl.hazmat.randomness import OS_RANDOM
from secfl.remote import wire

DIM = 12
CLIP = 5.0


CAP = 100.0  # the public weight cap (above every weight here: the relative weights are proportional to them)


def make_pipeline(n: int, protocol=None, grouping=None) -> Pipeline:
    return Pipeline(clients_per_round=n, stages=[L2Clip(norm=CLIP), Quantize(scale=2.0**20)],
                    protocol=protocol or SecAggPlus(), grouping=grouping or OneGroup(), weight_cap=CAP)


@pytest.fixture(scope="module")
def five() -> Pipeline:
    return make_pipeline(5)


def updates(ids, *, seed: int = 0) -> dict[int, np.ndarray]:
    """Small updates (norm < CLIP: the clip is the identity, so the expected mean is the plain one)."""
    return {c: (np.random.default_rng([seed, c]).normal(size=DIM) * 0.2).astype(np.float32) for c in ids}


def stage_of(request: bytes) -> str:
    fields = wire.unpack(request, "open", "stage")
    return "open" if fields["kind"] == "open" else str(fields.get("stage"))


def reframe(request: bytes, **changes) -> bytes:
    """The same request with some header fields changed (what a malicious server can send)."""
    fields = wire.unpack(request, "open", "stage")
    kind, payload = fields.pop("kind"), fields.pop("payload")
    return wire.pack(kind, payload, **{**fields, **changes})


class Fleet:
    """Enrolled clients kept as state bytes, the server, and an exchange a test can tamper with.

    ``tamper(cid, stage, request)`` returns the request the client gets, or None for no delivery (a dropout).
    """

    def __init__(self, pipeline: Pipeline, ids, *, reproducible: bool = True, pinned=None) -> None:
        self.pipeline, self.ids, self.pinned = pipeline, list(ids), pinned or {}
        self.reproducible = reproducible
        self.server = RemoteServer(pipeline, DIM, reproducible=reproducible)
        self.states: dict[int, bytes] = {}
        self.public: dict[int, bytes] = {}
        for c in self.ids:
            client = RemoteClient(c, pipeline, simulation=reproducible)
            enrollment = client.enroll()
            self.public[c] = wire.unpack(enrollment, "enroll")["public_key"]
            assert self.server.enroll(enrollment) == c
            self.states[c] = client.state()
        self.tamper = None
        self.refused: dict[int, str] = {}  # client -> the stage it refused
        self.seen: list[dict[int, bytes]] = []  # every batch of requests, as the server sent it

    def client(self, c: int) -> RemoteClient:
        return RemoteClient(c, self.pipeline, state=self.states[c], pinned=self.pinned.get(c),
                            simulation=self.reproducible)

    def set_updates(self, round_: int, values, weights) -> None:
        for c in self.ids:
            client = self.client(c)
            client.set_update(round_, values[c], weights[c])
            self.states[c] = client.state()

    def deliver(self, c: int, request: bytes) -> bytes | None:
        client = self.client(c)
        try:
            return client.handle(request)
        except ProtocolIntegrityError:
            self.refused.setdefault(c, stage_of(request) if _parses(request) else "?")
            return None
        except Exception as error:  # not a ProtocolError: it must not pass for a failed round in the tests
            raise AssertionError(f"client {c} raised {error!r}, not ProtocolIntegrityError") from error
        finally:
            self.states[c] = client.state()  # after a refusal too: the client remembers it refused

    def exchange(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        self.seen.append(dict(requests))
        out = {}
        for c, request in requests.items():
            if self.tamper is not None:
                request = self.tamper(c, stage_of(request), request)
                if request is None:
                    continue
            reply = self.deliver(c, request)
            if reply is not None:
                out[c] = reply
        return out

    def run(self, round_: int, weights, *, seed: int = 7):
        return self.server.run_round(round_, weights, rng=np.random.default_rng(seed), exchange=self.exchange)


def _parses(request: bytes) -> bool:
    try:
        wire.unpack(request, "open", "stage")
        return True
    except ProtocolIntegrityError:
        return False


def survivors(out) -> list[int]:
    return sorted(c for group in out.result.survivors for c in group)


def mean_of(values, weights, ids) -> np.ndarray:
    w = np.array([weights[c] for c in ids])
    return (np.stack([values[c] for c in ids]).astype(np.float64) * w[:, None]).sum(0) / w.sum()


# ---------------------------------------------------------------- equality with the embedded engine


@pytest.mark.parametrize("protocol, grouping, n", [(SecAggPlus, OneGroup, 5), (SecAgg, lambda: Buckets(size=3), 6),
                                                   (Plaintext, OneGroup, 4)], ids=["secagg+", "secagg-buckets", "plain"])
def test_a_remote_round_equals_the_embedded_one(protocol, grouping, n):
    """Same pipeline, same round generator, ``reproducible=True``: the very same aggregate as ``run_round``."""
    pipeline = make_pipeline(n, protocol(), grouping())
    values, weights = updates(range(n)), {c: 10.0 + 3 * c for c in range(n)}
    embedded = pipeline.run_round([Update(c, values[c], weight=weights[c]) for c in range(n)],
                                  rng=np.random.default_rng(7))
    fleet = Fleet(pipeline, range(n))
    fleet.set_updates(1, values, weights)
    remote = fleet.run(1, weights)
    assert np.array_equal(remote.aggregate, embedded.aggregate)
    assert remote.result.survivors == embedded.result.survivors
    assert fleet.refused == {}


def test_a_dropout_at_masked_input_is_recovered(five):
    """A client that never answers its masked-input request: the others' sum, equal to the embedded round
    with the same dropout."""
    values, weights = updates(range(5)), {c: 1.0 + c for c in range(5)}
    fleet = Fleet(five, range(5))
    fleet.set_updates(1, values, weights)
    fleet.tamper = lambda c, stage, request: None if (c, stage) == (3, "masked_input") else request
    remote = fleet.run(1, weights)
    embedded = five.run_round([Update(c, values[c], weight=weights[c]) for c in range(5)],
                              rng=np.random.default_rng(7), dropouts=DropoutSchedule({3: "masked_input"}))
    assert survivors(remote) == [0, 1, 2, 4]
    assert np.array_equal(remote.aggregate, embedded.aggregate)
    np.testing.assert_allclose(remote.aggregate, mean_of(values, weights, [0, 1, 2, 4]), atol=1e-3)
    assert remote.measurements["secagg+/dropped"] == 1.0


# ---------------------------------------------------------------- a malicious server's requests


def _garble(request: bytes) -> bytes:
    """A byte of the protocol message's instance binding flipped (the frame still parses)."""
    head = int.from_bytes(request[:4], "little") + 4
    out = bytearray(request)
    out[head + 8] ^= 0x40
    return bytes(out)


TAMPERING = {
    "truncated frame": lambda request, previous: request[:3],
    "garbled payload": lambda request, previous: _garble(request),
    "truncated payload": lambda request, previous: request[:-5],
    "replayed (previous stage)": lambda request, previous: previous,
    "reordered (a later stage)": lambda request, previous: reframe(request, stage="masked_input"),
    "unknown stage": lambda request, previous: reframe(request, stage="advertise_keys"),
    "stage not a string": lambda request, previous: reframe(request, stage=["check_shares"]),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_a_tampered_request_is_refused_and_the_round_counts_a_dropout(five, how):
    """Client 2's check_shares request is tampered with: it refuses (ProtocolIntegrityError), answers nothing
    more in this instance (not even the genuine request), and the round completes without it."""
    values, weights = updates(range(5)), {c: 1.0 for c in range(5)}
    fleet = Fleet(five, range(5))
    fleet.set_updates(1, values, weights)
    previous = {}

    def tamper(c, stage, request):
        if c == 2 and stage == "share_keys":
            previous[c] = request
        if c == 2 and stage == "check_shares":
            assert fleet.deliver(c, TAMPERING[how](request, previous[c])) is None  # refused
            assert fleet.refused == {2: fleet.refused[2]}
            return request  # the genuine request now: still refused
        return request

    fleet.tamper = tamper
    out = fleet.run(1, weights)
    assert 2 in fleet.refused and len(fleet.refused) == 1
    assert survivors(out) == [0, 1, 3, 4]
    np.testing.assert_allclose(out.aggregate, mean_of(values, weights, [0, 1, 3, 4]), atol=1e-3)


def test_a_request_answered_once_is_refused_the_second_time(five):
    fleet = Fleet(five, range(5))
    fleet.set_updates(1, updates(range(5)), {c: 1.0 for c in range(5)})
    answered = {}

    def tamper(c, stage, request):
        if c == 1 and stage == "share_keys":
            answered[c] = fleet.deliver(c, request)
            return request  # the same request again
        return request

    fleet.tamper = tamper
    out = fleet.run(1, {c: 1.0 for c in range(5)})
    assert answered[1] is not None and fleet.refused == {1: "share_keys"}
    assert 1 not in survivors(out)


def test_a_request_of_the_previous_round_is_refused(five):
    fleet = Fleet(five, range(5))
    weights = {c: 1.0 for c in range(5)}
    fleet.set_updates(1, updates(range(5)), weights)
    fleet.run(1, weights)
    old = {c: r for batch in fleet.seen for c, r in batch.items() if stage_of(r) == "share_keys"}
    fleet.set_updates(2, updates(range(5), seed=1), weights)
    fleet.tamper = lambda c, stage, request: old[c] if (c, stage) == (4, "share_keys") else request
    out = fleet.run(2, weights)
    assert fleet.refused == {4: "share_keys"} and 4 not in survivors(out)


def _open_for(fleet: Fleet, c: int, weights) -> bytes:
    """The genuine open of client ``c`` (the round is stopped once the opens are captured)."""
    class Stop(Exception):
        pass

    captured = {}

    def exchange(requests):
        captured.update(requests)
        raise Stop

    with pytest.raises(Stop):
        fleet.server.run_round(1, weights, rng=np.random.default_rng(7), exchange=exchange)
    return captured[c]


@pytest.mark.parametrize("roster", [[0, 1, 2, 3, 4, 5], [0, 1], [0, 1, 2, 3, 4, 5, 6, 7, 8]],
                         ids=["one more", "too few", "many more"])
def test_an_open_for_a_roster_size_the_client_does_not_accept_is_refused(five, roster):
    fleet = Fleet(five, range(5))
    weights = {c: 1.0 for c in range(5)}
    fleet.set_updates(1, updates(range(5)), weights)
    genuine = _open_for(fleet, 0, weights)
    assert fleet.deliver(0, reframe(genuine, roster=roster)) is None
    assert fleet.refused == {0: "open"}


def test_a_client_accepts_only_the_sizes_it_was_told(five):
    """``accept_sizes`` narrows what the client accepts: a round of 5 is refused by a client that takes 3..4."""
    fleet = Fleet(five, range(5))
    weights = {c: 1.0 for c in range(5)}
    fleet.set_updates(1, updates(range(5)), weights)
    genuine = _open_for(fleet, 0, weights)
    narrow = RemoteClient(0, five, state=fleet.states[0], accept_sizes=(3, 4))
    with pytest.raises(ProtocolIntegrityError):
        narrow.handle(genuine)
    assert RemoteClient(0, five, state=fleet.states[0]).handle(genuine)  # the default range takes it


def test_a_second_open_for_the_same_round_is_refused(five):
    """The input is encoded once: a second open of the round (same or another session) is refused, also by
    a client rebuilt from its state."""
    fleet = Fleet(five, range(5))
    weights = {c: 1.0 for c in range(5)}
    fleet.set_updates(1, updates(range(5)), weights)
    genuine = _open_for(fleet, 0, weights)
    assert fleet.deliver(0, genuine) is not None
    assert fleet.deliver(0, genuine) is None
    assert fleet.deliver(0, reframe(genuine, session=OS_RANDOM.bytes(16))) is None
    assert fleet.refused == {0: "open"}


MALFORMED_OPENS = {
    "negative group": {"group": -1}, "unsorted roster": {"roster": [4, 3, 2, 1, 0]},
    "repeated id": {"roster": [0, 0, 1, 2, 3]}, "roster not a list": {"roster": 5},
    "short session": {"session": b"x"}, "session not bytes": {"session": "00" * 16},
    "bad seed": {"seed": [-1, []]}, "seed not a list": {"seed": 3}, "directory a list": {"directory": [1]},
    "directory not hex": {"directory": {"1": "zz"}},
    "weight 0": {"relative_weight": 0}, "weight above 1": {"relative_weight": 1.5},
    "weight NaN": {"relative_weight": float("nan")}, "weight a string": {"relative_weight": "x"},
    "another round": {"round": 2}, "no round": {"round": None}, "negative round": {"round": -1},
    "not in the roster": {"roster": [1, 2, 3, 4, 5]}, "a key of 1 byte": {"directory": {"1": "00"}},
    "round a float": {"round": 1.0}, "group a string": {"group": "0"}, "roster of strings": {"roster": list("01234")},
    "weight a bool": {"relative_weight": True},
}


@pytest.mark.parametrize("change", list(MALFORMED_OPENS))
def test_a_malformed_open_is_refused_and_spends_nothing(five, change):
    """Every malformed field: ProtocolIntegrityError (nothing else escapes), and the input is not consumed
    (the genuine open is answered afterwards)."""
    fleet = Fleet(five, range(5))
    weights = {c: 1.0 for c in range(5)}
    fleet.set_updates(1, updates(range(5)), weights)
    genuine = _open_for(fleet, 0, weights)
    assert fleet.deliver(0, reframe(genuine, **MALFORMED_OPENS[change])) is None
    assert fleet.deliver(0, genuine) is not None


@pytest.mark.parametrize("garble", [lambda f: {**f, "dtype": "float64"},
                                    lambda f: {**f, "payload": f["payload"][:-4]}, lambda f: {**f, "dtype": ["x"]},
                                    lambda f: {k: v for k, v in f.items() if k != "dtype"}],
                         ids=["another dtype", "short", "dtype a list", "no dtype"])
def test_a_malformed_plaintext_reply_is_a_dropout_not_a_crash(garble):
    """A client's plaintext reply that is not one vector of the pipeline's length and dtype: a dropout."""
    pipeline = make_pipeline(4, Plaintext())
    values, weights = updates(range(4)), {c: 1.0 for c in range(4)}
    fleet = Fleet(pipeline, range(4))
    fleet.set_updates(1, values, weights)

    def exchange(requests):
        replies = fleet.exchange(requests)
        fields = wire.unpack(replies[2], "reply")
        fields = garble({k: v for k, v in fields.items() if k != "kind"})
        replies[2] = wire.pack("reply", fields.pop("payload"), **fields)
        return replies

    out = fleet.server.run_round(1, weights, rng=np.random.default_rng(7), exchange=exchange)
    assert survivors(out) == [0, 1, 3]
    np.testing.assert_allclose(out.aggregate, mean_of(values, weights, [0, 1, 3]), atol=1e-3)


def test_a_weight_that_is_not_a_finite_positive_number_is_refused(five):
    fleet = Fleet(five, range(5))
    for bad in (float("nan"), 0.0, -1.0, float("inf"), True, "1"):
        with pytest.raises(ConfigurationError, match="finite number > 0"):
            fleet.run(1, {c: (bad if c == 2 else 1.0) for c in range(5)})
    fleet.set_updates(1, updates(range(5)), {c: 1.0 for c in range(5)})
    assert survivors(fleet.run(1, {c: np.float32(1.0) for c in range(5)})) == [0, 1, 2, 3, 4]  # numpy weights


def test_a_stage_before_any_open_is_refused(five):
    client = RemoteClient(0, five)
    with pytest.raises(ProtocolIntegrityError):
        client.handle(wire.pack("stage", b"\x00" * 64, stage="share_keys"))
    with pytest.raises(ProtocolIntegrityError):
        client.handle(wire.pack("reply"))  # not a request


def test_a_directory_that_disagrees_with_a_pinned_key_is_refused(five):
    """Client 0 pinned its peers' keys out of band: the server's directory must agree with them."""
    weights = {c: 1.0 for c in range(5)}
    fleet = Fleet(five, range(5))
    fleet.pinned = {0: {c: k for c, k in fleet.public.items() if c != 0}}
    fleet.set_updates(1, updates(range(5)), weights)
    genuine = _open_for(fleet, 0, weights)
    forged = dict(wire.unpack(genuine, "open")["directory"])
    forged["1"] = crypto.ed25519_keypair(OS_RANDOM)[1].hex()  # the server swaps peer 1's key
    assert fleet.deliver(0, reframe(genuine, directory=forged)) is None
    assert fleet.refused == {0: "open"}
    fleet.refused.clear()
    assert fleet.deliver(0, genuine) is not None  # the directory that agrees is taken

    wrong = Fleet(five, range(5))  # a pin that disagrees with the server's (honest) directory
    wrong.pinned = {0: {1: fleet.public[1]}}  # client 1's key in the other fleet
    wrong.set_updates(1, updates(range(5)), weights)
    out = wrong.run(1, weights)
    assert wrong.refused == {0: "open"} and survivors(out) == [1, 2, 3, 4]


def test_pinned_keys_that_agree_change_nothing(five):
    weights = {c: 1.0 for c in range(5)}
    fleet = Fleet(five, range(5))
    fleet.pinned = {c: dict(fleet.public) for c in range(5)}
    values = updates(range(5))
    fleet.set_updates(1, values, weights)
    out = fleet.run(1, weights)
    assert fleet.refused == {} and survivors(out) == [0, 1, 2, 3, 4]


def test_a_client_that_never_enrolled_is_a_configuration_error(five):
    fleet = Fleet(five, range(4))
    calls = []
    with pytest.raises(ConfigurationError, match="never enrolled"):
        fleet.server.run_round(1, {c: 1.0 for c in range(5)}, rng=np.random.default_rng(0),
                               exchange=lambda requests: calls.append(requests) or {})
    assert calls == []  # refused before anything is sent


def test_enrollment_is_once_per_id(five):
    server = RemoteServer(five, DIM)
    first = RemoteClient(0, five)
    assert server.enroll(first.enroll()) == 0
    assert server.enroll(first.enroll()) == 0  # the same key again is fine
    with pytest.raises(ProtocolError):
        server.enroll(RemoteClient(0, five).enroll())  # another key for the same id
    with pytest.raises(ProtocolError):
        server.enroll(b"\x00\x00")
    key = wire.unpack(first.enroll(), "enroll")["public_key"]
    for client, public in ((float("inf"), key), (1.5, key), (True, key), (-1, key), (2**40, key), (5, key[:31])):
        with pytest.raises(ProtocolError):  # checked before anything is parsed further (no OverflowError)
            server.enroll(wire.pack("enroll", client=client, public_key=public))


# ---------------------------------------------------------------- client state


def test_the_state_round_trips_and_keeps_the_identity(five):
    client = RemoteClient(3, five)
    again = RemoteClient(3, five, state=client.state())
    assert again.enroll() == client.enroll() and again.state() == client.state()
    assert "signing_key" in json.loads(client.state())  # the secret the caller must keep like a key


@pytest.mark.parametrize("state", [b"", b"not json", b"[]", b"1", b'"x"', b"{}", b'{"id": 3}'])
def test_a_malformed_state_is_refused(five, state):
    with pytest.raises(ProtocolIntegrityError):
        RemoteClient(3, five, state=state)


def test_a_state_of_another_client_is_refused(five):
    with pytest.raises(ProtocolIntegrityError):
        RemoteClient(4, five, state=RemoteClient(3, five).state())


@pytest.mark.parametrize("values, weight", [(np.ones((2, 2)), 1.0), (np.array([np.nan]), 1.0), (np.ones(3), 0.0)])
def test_a_bad_update_is_a_configuration_error(five, values, weight):
    with pytest.raises(ConfigurationError):
        RemoteClient(0, five).set_update(1, values, weight)


# ---------------------------------------------------------------- wire format


def test_wire_round_trip():
    message = wire.pack("stage", b"\x00\xffraw", stage="unmask", key=b"\x01\x02", n=3, ids=[1, 2])
    fields = wire.unpack(bytearray(message), "open", "stage")
    assert fields == {"kind": "stage", "stage": "unmask", "key": b"\x01\x02", "n": 3, "ids": [1, 2],
                      "payload": b"\x00\xffraw"}


def _frame(header: bytes, payload: bytes = b"", size: int | None = None) -> bytes:
    return (len(header) if size is None else size).to_bytes(4, "little") + header + payload


MALFORMED_FRAMES = {
    "str": "abcd", "None": None, "list": [1, 2, 3, 4], "empty": b"", "three bytes": b"\x01\x00\x00",
    "header longer than the message": _frame(b'{"kind":"stage"}', size=100),
    "header over 1 MiB": _frame(b'{"kind":"stage"}', size=(1 << 20) + 1),
    "header not JSON": _frame(b"{kind"), "header not UTF-8": _frame(b'{"kind":"\xff"}'),
    "header a list": _frame(b'["stage"]'), "no kind": _frame(b'{"stage":"unmask"}'),
    "another kind": _frame(b'{"kind":"enroll"}'), "kind not a string": _frame(b'{"kind":["stage"]}'),
    "payload in the header": _frame(b'{"kind":"stage","payload":"x"}'),
    "bad hex": _frame(b'{"kind":"stage","key":{"hex":"zz"}}'),
    "nested 100,000 deep": _frame(b'{"kind":"stage","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "NaN": _frame(b'{"kind":"stage","x":NaN}'), "Infinity": _frame(b'{"kind":"stage","x":-Infinity}'),
}


@pytest.mark.parametrize("frame", list(MALFORMED_FRAMES))
def test_wire_refuses_malformed_frames(frame):
    with pytest.raises(ProtocolIntegrityError):
        wire.unpack(MALFORMED_FRAMES[frame], "open", "stage")


def test_wire_refuses_an_oversized_message(monkeypatch):
    monkeypatch.setattr(wire, "MAX_MESSAGE_BYTES", 64)
    message = wire.pack("stage", b"\x00" * 100, stage="unmask")
    with pytest.raises(ProtocolIntegrityError):
        wire.unpack(message, "stage")


# ---------------------------------------------------------------- a malicious server, searched


@pytest.fixture(scope="module")
def four() -> Pipeline:
    return make_pipeline(4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.integers(0, 6), target=st.integers(0, 3), position=st.integers(0, 1 << 20), flip=st.integers(1, 255))
def test_a_server_flipping_any_request_byte_never_gets_a_wrong_sum(four, batch, target, position, flip):
    """One byte of one request (any stage, any client, any position) is changed. Either the round fails with
    a ProtocolError or it returns the mean of the inputs of the clients it reports as survivors: never a
    wrong sum without an error. Clients refuse only with ProtocolIntegrityError.

    Equal weights: each client's relative weight is 1.0, and no one-byte change of "1.0" is another weight in
    (0, 1]. (A request's fields are not authenticated: a server may send a client another weight, which the
    server chooses anyway; it changes the weighting the server asked for, not the secure sum.)
    """
    ids = range(4)
    values, weights = updates(ids, seed=position % 7), {c: 1.0 for c in ids}
    fleet = Fleet(four, ids, reproducible=False)
    fleet.set_updates(1, values, weights)
    calls = {"n": -1}

    def exchange(requests):
        calls["n"] += 1
        if calls["n"] == batch and target in requests:
            request = bytearray(requests[target])
            request[position % len(request)] ^= flip
            requests = {**requests, target: bytes(request)}
        out = {}
        for c, request in requests.items():
            reply = fleet.deliver(c, request)
            if reply is not None:
                out[c] = reply
        return out

    try:
        out = fleet.server.run_round(1, weights, rng=np.random.default_rng(7), exchange=exchange)
    except ProtocolError:
        return
    alive = survivors(out)
    assert set(alive) <= set(ids)
    np.testing.assert_allclose(out.aggregate, mean_of(values, weights, alive), atol=1e-3)


# ---------------------------------------------------------------- the worked example, end to end

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT / "examples" / "own_loop" / "run.py").exists(), reason="examples/ not in this tree")
def test_the_own_loop_example_runs_end_to_end():
    """``python -m examples.own_loop.run``: 3 rounds over 5 processes, client 0 restarted from its state,
    client 3 dropped in round 3; the model learns."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "examples.own_loop.run"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rounds = re.findall(r"round (\d): clients \[([\d, ]+)\] summed .* test accuracy ([\d.]+)", result.stdout)
    assert [r for r, _, _ in rounds] == ["1", "2", "3"], result.stdout
    assert [s for _, s, _ in rounds] == ["0, 1, 2, 3", "0, 1, 2, 3", "0, 1, 2"]
    assert "client 0: restarted" in result.stdout
    assert float(rounds[-1][2]) > 0.8


def test_a_client_ignores_the_servers_seed_unless_it_accepts_seeds():
    """A deployed client rounds with its own randomness: a server that sends a seed learns nothing by it."""
    spec = {"stages": [{"kind": "l2clip", "norm": 10.0}, {"kind": "quantize", "scale": 4.0}], "protocol": {"kind": "plaintext"},
            "grouping": {"kind": "one_group"}, "data": {"num_clients": 2}, "client": {"weight_cap": 1.0}}
    from secfl import scenario

    pipeline = scenario.validate(spec).build_pipeline()
    outs = {}
    for accept in (True, False):
        words = []
        for _ in range(2):
            client = RemoteClient(0, pipeline, simulation=accept)
            client.set_update(1, np.full(64, 0.3, np.float32), 1.0)
            request = wire.pack("open", round=1, session=b"s" * 16, group=0, roster=[0, 1], relative_weight=1.0,
                           seed=[[1, 2, 3], [0]], directory={})
            words.append(wire.unpack(client.handle(request), "reply")["payload"])
        outs[accept] = words[0] == words[1]
    assert outs == {True: True, False: False}  # stochastic rounding: the same seed, the same words


def test_a_client_bound_to_another_model_takes_no_part_in_the_sum(five):
    """Each client binds the model it received (``set_update(context=...)``), the server the one it sent:
    client 2, sent another model (the inconsistency attack's target), cannot join the others' sum."""
    sent, other = model_context([np.zeros(4, np.float32)]), model_context([np.ones(4, np.float32)])
    values, weights = updates(range(5)), {c: 1.0 for c in range(5)}
    fleet = Fleet(five, range(5), reproducible=False)
    for c in range(5):
        client = fleet.client(c)
        client.set_update(1, values[c], weights[c], context=other if c == 2 else sent)
        fleet.states[c] = client.state()
    out = fleet.server.run_round(1, weights, rng=np.random.default_rng(7), exchange=fleet.exchange, context=sent)
    assert survivors(out) == [0, 1, 3, 4]
    np.testing.assert_allclose(out.aggregate, mean_of(values, weights, [0, 1, 3, 4]), atol=1e-3)
    with pytest.raises(ConfigurationError):
        fleet.client(0).set_update(2, values[0], 1.0, context=b"short")
