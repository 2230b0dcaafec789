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
    assert first[0][8:24] != second[0][8:24]  # session ids differ
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
