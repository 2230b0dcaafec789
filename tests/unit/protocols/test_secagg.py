import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError
from secfl.protocols import Plaintext, SecAgg, SecAggPlus
from secfl.types import DropoutSchedule, Update

STAGES = SecAgg.stages


def ring_updates(n, d, seed=0, dtype=np.uint32, high=2**20):
    rng = np.random.default_rng(seed)
    return [Update(i, rng.integers(0, high, size=d).astype(dtype)) for i in range(n)]


def oracle(ups, groups, schedule):
    """Plaintext over the clients whose masked input arrived (dropped after masked_input: still in)."""
    cut = STAGES.index("masked_input")
    gone = {c: "upload" for c, s in schedule.items() if STAGES.index(s) <= cut}
    return Plaintext().run(ups, groups=groups, dropouts=DropoutSchedule(gone))


@pytest.mark.parametrize("protocol", [SecAgg(), SecAggPlus(), SecAggPlus(neighbours=4, dropout_rate=0.0)],
                         ids=["secagg", "secagg+", "secagg+k4"])
@pytest.mark.parametrize("stage", STAGES)
def test_one_dropout_at_each_stage_equals_plaintext(protocol, stage):
    ups = ring_updates(9, 33)
    groups = [list(range(9))]
    result = protocol.run(ups, groups=groups, dropouts=DropoutSchedule({4: stage}))
    expected = oracle(ups, groups, {4: stage})
    assert np.array_equal(result.sums, expected.sums)
    assert result.survivors == expected.survivors
    assert (4 in result.survivors[0]) == (STAGES.index(stage) > STAGES.index("masked_input"))


def test_groups_are_separate_instances_and_uint64_words_work():
    ups = ring_updates(10, 5, dtype=np.uint64, high=2**62)
    groups = [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    result = SecAggPlus().run(ups, groups=groups)
    assert result.sums.dtype == np.uint64
    assert np.array_equal(result.sums, Plaintext().run(ups, groups=groups).sums)


def test_sparse_graph_in_a_large_group():
    ups = ring_updates(40, 20)
    schedule = {c: "share_keys" for c in (3, 17)} | {c: "unmask" for c in (5, 30)}
    result = SecAggPlus().run(ups, groups=[list(range(40))], dropouts=DropoutSchedule(schedule))
    assert result.measurements["secagg+/neighbours"] == 22 < 39
    assert np.array_equal(result.sums, oracle(ups, [list(range(40))], schedule).sums)


def test_below_threshold_aborts():
    ups = ring_updates(5, 4)  # SecAgg over 5: t = 3
    with pytest.raises(InsufficientParticipantsError):
        SecAgg().run(ups, groups=[list(range(5))], dropouts=DropoutSchedule({0: "masked_input", 1: "share_keys", 2: "advertise_keys"}))
    with pytest.raises(InsufficientParticipantsError):  # 3 masked inputs, but only 2 answer the unmasking
        SecAgg().run(ups, groups=[list(range(5))], dropouts=DropoutSchedule({0: "masked_input", 1: "masked_input", 2: "unmask"}))


def test_server_view_holds_masked_inputs_only():
    ups = ring_updates(6, 64)
    result = SecAgg().run(ups, groups=[list(range(6))])
    assert set(result.view.received) == set(range(6))
    for u in ups:
        raw = u.values.astype("<u4").tobytes()
        assert all(raw not in message for message in result.view.received[u.client_id])
    assert result.measurements["secagg/bytes_up"] == result.view.total_bytes
    assert result.measurements["secagg/bytes_down"] > 0


def test_fresh_session_and_masks_every_round():
    protocol, ups = SecAgg(), ring_updates(4, 16)
    first = protocol.run(ups, groups=[[0, 1, 2, 3]]).view.received[0]
    second = protocol.run(ups, groups=[[0, 1, 2, 3]]).view.received[0]
    assert first[0][8:40] != second[0][8:40]  # instance digests differ (fresh session ids)
    assert first[2] != second[2]  # same input, other masks


@pytest.mark.parametrize(
    "ups, groups, match",
    [
        ([Update(i, np.zeros(3, np.float32)) for i in range(3)], [[0, 1, 2]], "Quantize"),
        (ring_updates(4, 3), [[0, 1], [2, 3]], "groups of 3"),
        ([Update(2**31, np.zeros(3, np.uint32)), *ring_updates(2, 3)], [[0, 1, 2**31]], "client ids"),
    ],
)
def test_bad_inputs(ups, groups, match):
    with pytest.raises(ConfigurationError, match=match):
        SecAgg().run(ups, groups=groups)


def test_unknown_dropout_stage():
    with pytest.raises(ConfigurationError, match="upload"):
        SecAgg().run(ring_updates(3, 2), groups=[[0, 1, 2]], dropouts=DropoutSchedule({0: "upload"}))


@pytest.mark.parametrize("kwargs", [{"neighbours": 0}, {"threshold": 1.5}, {"dropout_rate": 0.7},
                                    {"security_bits": 0}, {"corrupt_rate": -0.1}])
def test_bad_parameters(kwargs):
    with pytest.raises(ConfigurationError):
        SecAggPlus(**kwargs)


def test_overrides_fit_large_groups_and_are_checked_when_the_pipeline_is_built():
    from secfl.grouping import OneGroup
    from secfl.pipeline import Pipeline
    from secfl.stages import L2Clip, Quantize

    protocol = SecAggPlus(neighbours=22, threshold=14)  # fine for a group of 100
    assert protocol.params(100).threshold == 14
    Pipeline(clients_per_round=100, protocol=protocol, grouping=OneGroup(), stages=[L2Clip(1.0), Quantize()])
    with pytest.raises(ConfigurationError, match="safe range"):
        Pipeline(clients_per_round=100, protocol=SecAggPlus(neighbours=22, threshold=6), grouping=OneGroup(),
                 stages=[L2Clip(1.0), Quantize()])


# ContributionRecord: one contribution per input, across restarts -------------------------------

def test_a_file_backed_record_survives_a_restart(tmp_path):
    from secfl.exceptions import ProtocolIntegrityError
    from secfl.protocols.secagg_client import input_key
    from secfl.protocols.secagg_record import ContributionRecord

    path = tmp_path / "contributions"
    key, other = input_key("task", 1, b"model-digest"), input_key("task", 2, b"model-digest")
    first = ContributionRecord(path)
    first.spend(key)
    with pytest.raises(ProtocolIntegrityError):
        first.spend(key)
    restarted = ContributionRecord(path)  # a new process on the same file
    assert key in restarted and len(restarted) == 1
    with pytest.raises(ProtocolIntegrityError):
        restarted.spend(key)
    restarted.spend(other)
    assert len(ContributionRecord(path)) == 2
    assert ContributionRecord().spend(key) is None  # an in-memory record knows nothing of the file


def test_a_torn_last_line_is_ignored_and_a_damaged_middle_line_is_refused(tmp_path):
    from secfl.protocols.secagg_record import ContributionRecord

    path = tmp_path / "contributions"
    keys = [bytes([i]) * 32 for i in range(3)]
    record = ContributionRecord(path)
    for key in keys[:2]:
        record.spend(key)
    with open(path, "ab") as out:
        out.write(keys[2].hex()[:17].encode())  # a crash in the middle of the third write
    after_crash = ContributionRecord(path)
    assert keys[0] in after_crash and keys[1] in after_crash and keys[2] not in after_crash
    lines = path.read_bytes().split(b"\n")
    lines[1] = lines[1][:10] + b"zz" + lines[1][12:]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(ConfigurationError, match="line 2"):
        ContributionRecord(path)
    path.write_bytes(keys[0].hex().encode() + b"\n" + b"00" * 31 + b"\n")  # a short key, not the last piece
    with pytest.raises(ConfigurationError, match="damaged"):
        ContributionRecord(path)


@pytest.mark.parametrize("key", [b"short", "a" * 32, bytes(33)])
def test_a_record_refuses_keys_that_are_not_32_bytes(key):
    from secfl.protocols.secagg_record import ContributionRecord

    with pytest.raises(ConfigurationError):
        ContributionRecord().spend(key)


def test_a_client_with_a_restarted_record_refuses_to_contribute_the_same_input_again(tmp_path):
    from secfl.exceptions import ProtocolIntegrityError
    from secfl.protocols.secagg_instance import Instance
    from secfl.protocols.secagg_record import ContributionRecord

    def attempt(session):
        """Client 0 with a file-backed record; the others in memory; returns the server's sum."""
        from secfl.protocols.secagg_round import run_instance

        protocol = SecAgg()
        instance = Instance(session, 1, 0, (0, 1, 2, 3))
        clients = protocol.clients(instance, {c: np.full(4, c + 1, np.uint32) for c in range(4)})
        clients[0].record = ContributionRecord(tmp_path / "client-0")  # the others keep in-memory records
        clients[0].input_key = bytes(32)  # the same input (same task, round and model) both times
        return run_instance(clients, protocol.server(instance, length=4, dtype=np.uint32))[0]

    assert np.array_equal(attempt(bytes(16)), np.full(4, 10, np.uint32))
    with pytest.raises(ProtocolIntegrityError):  # a fresh session, a fresh process: still refused
        attempt(b"\x01" * 16)


# secagg_instance: the bound instance and its invitation ------------------------------------------

def test_an_invitation_roundtrips_and_binds_every_field():
    from secfl.protocols.secagg_instance import Instance, decode_invite, encode_invite

    instance = Instance(bytes(range(16)), 7, 3, (2, 5, 11, 2**31 - 3))
    decoded = decode_invite(encode_invite(instance))
    assert decoded == instance and decoded.digest == instance.digest
    assert decode_invite(memoryview(bytearray(encode_invite(instance)))) == instance
    assert (instance.n, instance.index(11), instance.index(4), 5 in instance, 4 in instance) == (4, 2, -1, True, False)
    variants = [Instance(bytes(16), 7, 3, instance.roster), Instance(instance.session, 8, 3, instance.roster),
                Instance(instance.session, 7, 4, instance.roster), Instance(instance.session, 7, 3, (2, 5, 11)),
                Instance(instance.session, 7, 3, (2, 5, 12, 2**31 - 3))]
    assert len({instance.digest, *(v.digest for v in variants)}) == 1 + len(variants)


def _invite_bytes(session=bytes(16), round_=1, group=0, roster=(0, 1, 2)) -> bytes:
    from secfl.hazmat import wire
    from secfl.hazmat.codec import Writer
    from secfl.protocols.secagg_instance import KIND_INVITE

    body = Writer().raw(session).u64(round_).u32(group).ids(list(roster))
    return wire.frame(KIND_INVITE, body.payload())


@pytest.mark.parametrize("data", [
    None, 17, "invite", b"", _invite_bytes()[:-1], _invite_bytes() + b"\x00",
    _invite_bytes()[:3] + b"\x01" + _invite_bytes()[4:],  # another kind
    _invite_bytes(roster=(2, 1, 3)), _invite_bytes(roster=(1, 1, 2)), _invite_bytes(roster=(0, 2**31)),
    _invite_bytes(round_=2**63),
], ids=["none", "int", "str", "empty", "truncated", "trailing", "kind", "unsorted", "repeated", "id-range", "round"])
def test_malformed_invitations_raise_malformed(data):
    from secfl.exceptions import MalformedMessageError
    from secfl.protocols.secagg_instance import decode_invite

    with pytest.raises(MalformedMessageError):
        decode_invite(data)


def test_an_invitation_larger_than_the_cap_is_malformed():
    from secfl.exceptions import MalformedMessageError
    from secfl.protocols.secagg_instance import decode_invite

    with pytest.raises(MalformedMessageError):
        decode_invite(_invite_bytes(roster=range(10)), max_roster=9)


@pytest.mark.parametrize("kwargs", [
    {"session": bytes(15)}, {"session": "s" * 16}, {"round": -1}, {"round": True}, {"group": 2**63},
    {"roster": (3, 1, 2)}, {"roster": (1, 1, 2)}, {"roster": (-1, 0, 1)}, {"roster": (0, 1, 2**31 - 2)},
    {"roster": (0, 1.5, 2)}, {"roster": ("0", "1", "2")},
], ids=repr)
def test_bad_instances_raise_configuration_error(kwargs):
    from secfl.protocols.secagg_instance import Instance

    fields = {"session": bytes(16), "round": 1, "group": 0, "roster": (0, 1, 2)} | kwargs
    with pytest.raises(ConfigurationError):
        Instance(**fields)


def test_roster_of_sorts_and_refuses_repeats():
    from secfl.protocols.secagg_instance import roster_of

    assert roster_of({5, 1, 3}) == (1, 3, 5)
    with pytest.raises(ConfigurationError):
        roster_of([1, 2, 1])
    with pytest.raises(ConfigurationError):
        roster_of([1, "2"])


def test_a_contribution_record_path_that_is_a_directory_is_a_configuration_error(tmp_path):
    from secfl.protocols.secagg_record import ContributionRecord

    with pytest.raises(ConfigurationError, match="not a file"):
        ContributionRecord(tmp_path)
