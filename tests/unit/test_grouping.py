import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.grouping import Buckets, Individual, OneGroup


def test_individual_and_one_group(rng):
    assert Individual().assign([4, 2], rng=rng) == [[4], [2]]
    assert OneGroup().assign([4, 2], rng=rng) == [[4, 2]]
    assert (Individual().num_groups(7), Individual().max_group_size(7)) == (7, 1)
    assert (OneGroup().num_groups(7), OneGroup().max_group_size(7)) == (1, 7)


@pytest.mark.parametrize("n, size, groups, largest", [(20, 5, 4, 5), (21, 5, 5, 5), (7, 3, 3, 3), (3, 10, 1, 3)])
def test_buckets_partition_the_clients_evenly(rng, n, size, groups, largest):
    buckets = Buckets(size)
    assigned = buckets.assign(list(range(100, 100 + n)), rng=rng)
    assert len(assigned) == buckets.num_groups(n) == groups
    assert max(map(len, assigned)) == buckets.max_group_size(n) == largest
    assert max(map(len, assigned)) - min(map(len, assigned)) <= 1
    assert sorted(c for g in assigned for c in g) == list(range(100, 100 + n))


def test_buckets_are_reshuffled_each_round():
    rng = np.random.default_rng(0)
    first = Buckets(2).assign(list(range(10)), rng=rng)
    second = Buckets(2).assign(list(range(10)), rng=rng)
    assert first != second


@pytest.mark.parametrize("size", [0, -2, 2.0, True])
def test_bad_size(size):
    with pytest.raises(ConfigurationError):
        Buckets(size)
