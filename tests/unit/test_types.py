import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.types import NO_DROPOUTS, DropoutSchedule, ServerView, Update


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": -1, "values": np.zeros(2)},
        {"client_id": 0, "values": np.zeros((2, 2))},
        {"client_id": 0, "values": [1.0]},
        {"client_id": 0, "values": np.array(["a"], dtype=object)},
        {"client_id": 0, "values": np.zeros(2, dtype=np.int64)},
        {"client_id": 0, "values": np.zeros(2), "weight": 0.0},
        {"client_id": 0, "values": np.zeros(2), "weight": float("inf")},
    ],
)
def test_bad_updates(kwargs):
    with pytest.raises(ConfigurationError):
        Update(**kwargs)


def test_dropout_schedule_accumulates_over_stages():
    schedule = DropoutSchedule({1: "a", 3: "c"})
    order = ("a", "b", "c")
    assert schedule.dropped_by("a", order) == {1}
    assert schedule.dropped_by("b", order) == {1}
    assert schedule.dropped_by("c", order) == {1, 3}
    assert NO_DROPOUTS.dropped_by("c", order) == frozenset()
    with pytest.raises(TypeError):
        schedule.at[1] = "b"  # read-only
    with pytest.raises(ConfigurationError, match="unknown"):
        schedule.dropped_by("a", ("a", "b"))
    with pytest.raises(ConfigurationError, match="client ids to stage names"):
        DropoutSchedule({"a": [1]})


def test_server_view_counts_bytes():
    assert ServerView("x", {1: (b"ab", b"c"), 2: (b"",)}).total_bytes == 3
