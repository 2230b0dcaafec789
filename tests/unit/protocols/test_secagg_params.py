import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import ConfigurationError
from secfl.protocols import secagg_graph
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_params import derive


def test_small_groups_use_the_complete_graph_with_a_majority_threshold():
    p = derive(10, dropout_rate=0.05, corrupt_rate=0.0)
    assert (p.neighbours, p.threshold) == (9, 5)  # k = n - 1: the complete graph


@pytest.mark.parametrize("n", [100, 1000, 100_000])
def test_large_groups_get_logarithmic_neighbourhoods_meeting_the_targets(n):
    p = derive(n, dropout_rate=0.05, corrupt_rate=0.0)
    assert p.neighbours < 40 and p.neighbours % 2 == 0
    assert 2 * p.threshold > p.neighbours  # never both shares of a client
    assert p.failure_log2 <= -20
    assert n * 0.05 ** (p.neighbours // 2) <= 2.0**-40  # connectivity under dropouts


def test_corrupt_clients_raise_the_threshold():
    honest, corrupt = derive(1000, dropout_rate=0.05, corrupt_rate=0.0), derive(1000, dropout_rate=0.05, corrupt_rate=0.05)
    assert corrupt.corrupt_bound > 0 and 2 * corrupt.threshold > corrupt.neighbours + corrupt.corrupt_bound
    assert corrupt.neighbours > honest.neighbours


def test_overrides_are_checked_against_safe_bounds():
    assert derive(30, dropout_rate=0.0, corrupt_rate=0.0, neighbours=6, threshold=5).threshold == 5
    with pytest.raises(ConfigurationError, match="safe range 4..6"):
        derive(30, dropout_rate=0.0, corrupt_rate=0.0, neighbours=6, threshold=3)
    with pytest.raises(ConfigurationError, match="revealing partial sums"):
        derive(30, dropout_rate=0.05, corrupt_rate=0.0, neighbours=6)
    with pytest.raises(ConfigurationError, match="even k"):
        derive(30, dropout_rate=0.0, corrupt_rate=0.0, neighbours=7)
    with pytest.raises(ConfigurationError, match="complete graph"):
        derive(30, dropout_rate=0.0, corrupt_rate=0.0, neighbours=6, complete=True)


@pytest.mark.parametrize("kwargs", [{"n": 2}, {"n": 10, "dropout_rate": 0.5}, {"n": 10, "corrupt_rate": -0.1}])
def test_bad_inputs(kwargs):
    args = {"dropout_rate": 0.05, "corrupt_rate": 0.0, **kwargs}
    with pytest.raises(ConfigurationError):
        derive(args.pop("n"), **args)


def test_harary_graph_is_k_regular_symmetric_and_fixed_by_the_instance():
    instance = Instance(b"s" * 16, 1, 0, tuple(range(20)))
    graph = secagg_graph.graph(instance, 6)
    assert all(len(nbrs) == 6 and u not in nbrs for u, nbrs in graph.items())
    assert all(u in graph[v] for u, nbrs in graph.items() for v in nbrs)
    assert graph == secagg_graph.graph(instance, 6)
    assert all(secagg_graph.neighbours(instance, 6, c) == graph[c] for c in instance.roster)  # O(k) per client
    assert secagg_graph.graph(Instance(b"s" * 16, 2, 0, tuple(range(20))), 6) != graph
    assert all(len(n) == 19 for n in secagg_graph.graph(instance, 19).values())
    assert math.isfinite(derive(20, dropout_rate=0.05, corrupt_rate=0.0).failure_log2)


@settings(max_examples=50, deadline=None)
@given(st.integers(3, 3000), st.binary(min_size=32, max_size=32))
def test_the_relabelling_is_a_permutation_and_its_inverse_inverts_it(n, key):
    pi = secagg_graph.Relabelling(key, n)
    points = range(n) if n <= 300 else [0, 1, n // 2, n - 2, n - 1]
    images = [pi(x) for x in points]
    assert all(0 <= y < n for y in images) and [pi.inverse(y) for y in images] == list(points)
    if n <= 300:
        assert sorted(images) == list(range(n))
