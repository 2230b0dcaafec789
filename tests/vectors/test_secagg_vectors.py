"""Known-answer vectors of protocols/secagg/ (made in the explicit deterministic test mode)."""

import json
from pathlib import Path

import numpy as np
import pytest

from secfl import exceptions
from secfl.hazmat.randomness import InsecureDeterministicRandomness
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.secagg_server import SecAggServer
from secfl.types import DropoutSchedule, Update

from secagg_vectors import SEED, STEPS, build, transcript

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "secagg" / "vectors"
FILES = {name: json.loads((VECTORS / f"{name}.json").read_text()) for name in ("generate", "verify", "invalid")}
CASES = {case["id"]: case for case in FILES["generate"]["cases"]}


def test_committed_vectors_are_what_the_implementation_generates():
    assert build() == FILES


@pytest.mark.parametrize("case", FILES["generate"]["cases"], ids=lambda c: c["id"])
def test_the_driver_sends_exactly_the_vector_bytes(case):
    protocol = (SecAgg if case["protocol"] == "secagg" else SecAggPlus)(randomness=InsecureDeterministicRandomness(SEED))
    ups = [Update(int(c), np.array(x, dtype=np.uint32)) for c, x in case["inputs"].items()]
    result = protocol.run(ups, groups=[list(range(case["n"]))],
                          dropouts=DropoutSchedule({int(c): s for c, s in case["dropouts"].items()}))
    assert [int(v) for v in result.sums[0]] == case["sum"]
    for client, messages in result.view.received.items():
        recorded = [case["up"][stage][str(client)] for stage in ("advertise_keys", *STEPS)
                    if str(client) in case["up"].get(stage, {})]
        assert [msg.hex() for msg in messages] == recorded


@pytest.mark.parametrize("case", FILES["verify"]["cases"], ids=lambda c: c["id"])
def test_a_server_replaying_the_uploads_replies_and_sums_as_recorded(case):
    base = CASES[case["base"]]
    directory = KeyDirectory({int(c): bytes.fromhex(k) for c, k in base["directory"].items()})
    params = SecAgg().params(base["n"]) if base["protocol"] == "secagg" else SecAggPlus().params(base["n"])
    header = m.Header(bytes.fromhex(base["session"]), base["round"], base["group"], m.SERVER, m.SERVER)
    server = SecAggServer(header=header, members=list(range(base["n"])), params=params, directory=directory,
                          length=base["length"], dtype=np.uint32)
    handlers = [server.receive_advertise, server.receive_shares, server.receive_masked, server.receive_consistency]
    for stage, handler, next_stage in zip(("advertise_keys", *STEPS), handlers, STEPS):
        replies = handler({int(c): bytes.fromhex(h) for c, h in base["up"][stage].items()})
        assert {str(c): r.hex() for c, r in replies.items()} == base["down"][next_stage]
    total = server.receive_unmask({int(c): bytes.fromhex(h) for c, h in base["up"]["unmask"].items()})
    assert [int(v) for v in total] == base["sum"]
    assert list(server.survivors) == base["survivors"]


@pytest.mark.parametrize("case", FILES["invalid"]["cases"], ids=lambda c: c["id"])
def test_clients_refuse_invalid_server_messages(case):
    client = transcript(stop_before=(case["stage"], case["client"]))["client"]
    handler = getattr(client, case["stage"])
    with pytest.raises(getattr(exceptions, case["error"])):
        handler(bytes.fromhex(case["message"]))
