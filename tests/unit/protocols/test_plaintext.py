import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError
from secfl.hazmat import wire
from secfl.protocols import Plaintext
from secfl.types import DropoutSchedule, Update


def updates(n, d=6, dtype=np.float32):
    return [Update(i, (np.arange(d) + 10 * i).astype(dtype)) for i in range(n)]


def test_sums_per_group_and_view_holds_every_input():
    ups = updates(5)
    result = Plaintext().run(ups, groups=[[0, 3], [1, 2, 4]])
    assert result.sums.shape == (2, 6)
    assert np.array_equal(result.sums[0], ups[0].values + ups[3].values)
    assert np.array_equal(result.sums[1], ups[1].values + ups[2].values + ups[4].values)
    assert result.survivors == ((0, 3), (1, 2, 4))
    # the plaintext server sees each client's vector: that is what "no protection" means
    assert set(result.view.received) == {0, 1, 2, 3, 4}
    assert np.array_equal(wire.decode_vector(result.view.received[2][0]), ups[2].values)
    assert result.measurements["plaintext/bytes_up"] == result.view.total_bytes > 5 * 6 * 4


def test_ring_values_are_summed_mod_2_64():
    ups = [Update(0, np.array([2**63, 1], np.uint64)), Update(1, np.array([2**63, 2], np.uint64))]
    assert np.array_equal(Plaintext().run(ups, groups=[[0, 1]]).sums[0], np.array([0, 3], np.uint64))


def test_dropouts_leave_the_sum_of_survivors():
    ups = updates(4)
    result = Plaintext().run(ups, groups=[[0, 1], [2, 3]], dropouts=DropoutSchedule({1: "upload"}))
    assert result.survivors == ((0,), (2, 3))
    assert np.array_equal(result.sums[0], ups[0].values)
    assert 1 not in result.view.received
    assert result.measurements["plaintext/dropped"] == 1


def test_a_group_with_no_survivor_aborts():
    with pytest.raises(InsufficientParticipantsError):
        Plaintext().run(updates(2), groups=[[0], [1]], dropouts=DropoutSchedule({1: "upload"}))


def test_unknown_dropout_stage_is_refused():
    with pytest.raises(ConfigurationError, match="upload"):
        Plaintext().run(updates(2), groups=[[0, 1]], dropouts=DropoutSchedule({1: "unmask"}))


@pytest.mark.parametrize(
    "ups, groups, match",
    [
        (updates(2), [[0], [0, 1]], "two groups"),
        (updates(2), [[0]], "no group"),
        (updates(2), [[0, 1, 7]], "client 7"),
        (updates(2), [[0, 1], []], "empty"),
        ([], [], "at least one"),
        ([Update(0, np.zeros(3, np.float32)), Update(0, np.zeros(3, np.float32))], [[0]], "two updates"),
        ([Update(0, np.zeros(3, np.float32)), Update(1, np.zeros(4, np.float32))], [[0, 1]], "shape"),
    ],
)
def test_bad_rounds_are_refused(ups, groups, match):
    with pytest.raises(ConfigurationError, match=match):
        Plaintext().run(ups, groups=groups)
