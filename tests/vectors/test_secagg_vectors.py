"""Known-answer vectors of protocols/secagg/ (made in the explicit deterministic test mode)."""

import json
from pathlib import Path

import numpy as np
import pytest

from secfl import exceptions
from secfl.hazmat.randomness import InsecureDeterministicRandomness
from secfl.protocols import secagg_graph
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_client import STAGES
from secfl.protocols.secagg_round import STEPS
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import DropoutSchedule, Update

from secagg_vectors import SEED, build, instance_of, protocol_of, transcript

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "secagg" / "vectors"
FILES = {name: json.loads((VECTORS / f"{name}.json").read_text()) for name in ("generate", "verify", "invalid")}
CASES = {case["id"]: case for case in FILES["generate"]["cases"]}
HONEST = [case for case in FILES["generate"]["cases"] if not case["cheats"]]  # what SecAggPlus.run can replay


def test_committed_vectors_are_what_the_implementation_generates():
    assert build() == FILES


def test_the_vectors_cover_drops_and_a_sparse_graph():
    cases = FILES["generate"]["cases"]
    assert {s for c in cases for s in c["dropouts"].values()} >= {"share_keys", "masked_input", "unmask"}
    assert any(c["neighbours"] < c["n"] - 1 for c in cases)
    convicting = [c for c in cases if c["convicted"]]
    assert convicting and all(c["convicted"] == sorted(map(int, c["cheats"])) for c in convicting)
    assert all(c["down"]["convict"] and c["up"]["convict"] for c in convicting)  # CONVICTION and PAIR_KEYS
    assert all(not c["down"]["convict"] and not c["up"]["convict"] for c in HONEST)
    assert any(c["stage"] == "convict" for c in FILES["invalid"]["cases"])
    assert {c["error"] for c in FILES["invalid"]["cases"]} == {
        "MalformedMessageError", "ProtocolIntegrityError", "InsufficientParticipantsError"}


def _run(case):
    protocol = protocol_of(case["protocol"], case["options"], InsecureDeterministicRandomness(SEED))
    ups = [Update(int(c), np.array(x, dtype=np.uint32)) for c, x in case["inputs"].items()]
    return protocol.run(ups, groups=[case["roster"]],
                        dropouts=DropoutSchedule({int(c): s for c, s in case["dropouts"].items()}))


@pytest.mark.parametrize("case", HONEST, ids=lambda c: c["id"])
def test_the_driver_sends_exactly_the_vector_bytes(case):
    result = _run(case)
    assert [int(v) for v in result.sums[0]] == case["sum"]
    assert list(result.survivors[0]) == case["survivors"]
    for client, messages in result.view.received.items():
        recorded = [case["up"][stage][str(client)] for stage in STAGES if str(client) in case["up"].get(stage, {})]
        assert [msg.hex() for msg in messages] == recorded


@pytest.mark.parametrize("case", HONEST, ids=lambda c: c["id"])
def test_the_test_mode_is_deterministic_end_to_end(case):
    first, second = _run(case), _run(case)
    assert np.array_equal(first.sums, second.sums) and first.survivors == second.survivors
    assert first.view.received == second.view.received


@pytest.mark.parametrize("case", FILES["generate"]["cases"], ids=lambda c: c["id"])
def test_the_recorded_instance_and_graph_are_the_ones_bound(case):
    instance = instance_of(case)
    assert instance.digest.hex() == case["digest"] and instance.n == case["n"]
    graph = secagg_graph.graph(instance, case["neighbours"])
    assert {str(c): sorted(v) for c, v in graph.items()} == case["graph"]
    for message in (m for msgs in (*case["up"].values(), *case["down"].values()) for m in msgs.values()):
        assert message[16:80] == case["digest"]  # every header: frame (8 bytes), then the instance digest


@pytest.mark.parametrize("case", FILES["verify"]["cases"], ids=lambda c: c["id"])
def test_a_server_replaying_the_uploads_replies_and_sums_as_recorded(case):
    base = CASES[case["base"]]
    instance = instance_of(case)
    assert instance.digest.hex() == base["digest"]
    directory = KeyDirectory({int(c): bytes.fromhex(k) for c, k in base["directory"].items()})
    params = protocol_of(base["protocol"], base["options"]).params(base["n"])
    assert (params.neighbours, params.threshold) == (base["neighbours"], base["threshold"])
    server = SecAggServer(instance=instance, params=params, directory=directory, length=base["length"],
                          dtype=np.uint32)
    handlers = [SecAggServer.receive_advertise, *(step for _, _, step in STEPS)]
    for stage, handler in zip(STAGES, handlers):
        out = handler(server, {int(c): bytes.fromhex(h) for c, h in base["up"][stage].items()})
        if stage != STAGES[-1]:
            next_stage = STAGES[STAGES.index(stage) + 1]
            assert {str(c): r.hex() for c, r in out.items()} == base["down"][next_stage]
    assert [int(v) for v in out] == base["sum"]
    assert list(server.survivors) == base["survivors"] and sorted(server.convicted) == base["convicted"]


@pytest.mark.parametrize("case", FILES["invalid"]["cases"], ids=lambda c: c["id"])
def test_clients_refuse_invalid_server_messages(case):
    client = transcript(case["base"], stop_before=(case["stage"], case["client"]))["client"]
    assert client.instance == instance_of(case)
    handler = getattr(client, case["stage"])
    with pytest.raises(getattr(exceptions, case["error"])):
        handler(bytes.fromhex(case["message"]))
    with pytest.raises(exceptions.ProtocolIntegrityError):  # and nothing more in this instance
        handler(bytes.fromhex(CASES[case["base"]]["down"][case["stage"]][str(case["client"])]))


@pytest.mark.parametrize("case", FILES["invalid"]["cases"], ids=lambda c: c["id"])
def test_the_genuine_message_at_that_point_is_accepted(case):
    """The invalid case is refused because of its change, not because the client was in another state."""
    client = transcript(case["base"], stop_before=(case["stage"], case["client"]))["client"]
    getattr(client, case["stage"])(bytes.fromhex(CASES[case["base"]]["down"][case["stage"]][str(case["client"])]))
