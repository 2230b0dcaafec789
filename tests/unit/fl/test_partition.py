"""Tests of secfl.fl.partition: IID, Dirichlet, shards and natural splits and their validation."""

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.fl.data import load_dataset
from secfl.fl.partition import PARTITIONS, partition

_RNG = np.random.default_rng(0)  # for calls whose outcome does not depend on the draws


def _labels(n_per_class: int = 200, classes: int = 10) -> np.ndarray:
    return np.random.default_rng(0).permutation(np.repeat(np.arange(classes), n_per_class))


def _assert_disjoint(parts: list[np.ndarray], n: int, *, covering: bool = True) -> None:
    assert all(p.dtype == np.int64 and p.ndim == 1 for p in parts)
    joined = np.concatenate(parts)
    assert len(np.unique(joined)) == len(joined)
    assert joined.min() >= 0 and joined.max() < n
    if covering:
        assert len(joined) == n


def _mean_classes(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    return float(np.mean([len(np.unique(labels[p])) for p in parts]))


def test_kinds():
    assert PARTITIONS == ("iid", "dirichlet", "shards", "natural")


def test_iid_is_near_equal_and_covers():
    labels = _labels()
    parts = partition(labels, num_clients=7, kind="iid", rng=np.random.default_rng(1))
    _assert_disjoint(parts, len(labels))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert _mean_classes(labels, parts) == 10


def test_dirichlet_covers_and_respects_min_per_client():
    labels = _labels()
    rng = np.random.default_rng(2)
    parts = partition(labels, num_clients=20, kind="dirichlet", alpha=0.3, min_per_client=30, rng=rng)
    _assert_disjoint(parts, len(labels))
    assert min(len(p) for p in parts) >= 30


def test_dirichlet_small_alpha_is_more_skewed():
    labels = _labels()
    skewed = partition(labels, num_clients=20, kind="dirichlet", alpha=0.1, rng=np.random.default_rng(3))
    balanced = partition(labels, num_clients=20, kind="dirichlet", alpha=100.0, rng=np.random.default_rng(3))
    assert _mean_classes(labels, skewed) < 7 < _mean_classes(labels, balanced) == 10


def test_same_rng_seed_same_partition():
    labels = _labels()
    a = partition(labels, num_clients=10, kind="dirichlet", alpha=0.5, rng=np.random.default_rng(4))
    b = partition(labels, num_clients=10, kind="dirichlet", alpha=0.5, rng=np.random.default_rng(4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_dirichlet_gives_up_with_advice():
    with pytest.raises(ConfigurationError, match="raise alpha"):
        partition(_labels(), num_clients=100, kind="dirichlet", alpha=0.01, min_per_client=19, rng=_RNG)


def test_shards_give_shards_per_client_classes():
    labels = _labels()  # 200 per class: every shard of 50 holds one class
    parts = partition(labels, num_clients=20, kind="shards", shards_per_client=2, rng=np.random.default_rng(5))
    _assert_disjoint(parts, len(labels))
    assert all(len(p) == 100 for p in parts)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)
    assert _mean_classes(labels, parts) > 1.5


def test_shards_drop_leftovers_when_uneven():
    labels = np.random.default_rng(6).integers(0, 10, 2003)
    parts = partition(labels, num_clients=10, kind="shards", shards_per_client=3, rng=np.random.default_rng(6))
    _assert_disjoint(parts, len(labels), covering=False)
    assert sum(len(p) for p in parts) == 30 * (2003 // 30)
    assert all(len(p) == 3 * (2003 // 30) for p in parts)
    assert _mean_classes(labels, parts) <= 4  # a shard straddles at most two classes


def test_natural_uses_owner_ids_in_order():
    natural = np.array([7, 3, 3, 7, 9, 9, 3, 7, 9, 9])
    labels = np.zeros(10, dtype=np.int64)
    parts = partition(labels, num_clients=3, kind="natural", natural=natural, min_per_client=3, rng=_RNG)
    assert [p.tolist() for p in parts] == [[1, 2, 6], [0, 3, 7], [4, 5, 8, 9]]


def test_natural_on_synthetic_dataset():
    ds = load_dataset("synthetic", seed=0)
    parts = partition(ds.y_train, num_clients=20, kind="natural", natural=ds.natural_clients, rng=_RNG)
    _assert_disjoint(parts, len(ds.y_train))
    assert all(np.all(ds.natural_clients[p] == k) for k, p in enumerate(parts))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"num_clients": 0, "kind": "iid"}, "num_clients"),
        ({"num_clients": 2.5, "kind": "iid"}, "num_clients"),
        ({"num_clients": 5, "kind": "pathological"}, "iid, dirichlet, shards, natural"),
        ({"num_clients": 201, "kind": "iid"}, "min_per_client=10"),
        ({"num_clients": 5, "kind": "iid", "min_per_client": -1}, "min_per_client"),
        ({"num_clients": 5, "kind": "iid", "alpha": 0.5}, "alpha"),
        ({"num_clients": 5, "kind": "iid", "shards_per_client": 2}, "shards_per_client"),
        ({"num_clients": 5, "kind": "dirichlet", "alpha": 0.5, "shards_per_client": 2}, "shards_per_client"),
        ({"num_clients": 5, "kind": "shards", "shards_per_client": 2, "natural": np.zeros(2000, np.int64)}, "natural"),
        ({"num_clients": 5, "kind": "dirichlet"}, "requires alpha"),
        ({"num_clients": 5, "kind": "dirichlet", "alpha": 0.0}, "alpha"),
        ({"num_clients": 5, "kind": "dirichlet", "alpha": float("nan")}, "alpha"),
        ({"num_clients": 5, "kind": "shards"}, "requires shards_per_client"),
        ({"num_clients": 5, "kind": "shards", "shards_per_client": 0}, "shards_per_client"),
        ({"num_clients": 10, "kind": "shards", "shards_per_client": 300}, "min_per_client"),
        ({"num_clients": 5, "kind": "natural"}, "requires natural"),
        ({"num_clients": 3, "kind": "natural", "natural": np.repeat([0, 1], 1000)}, "num_clients=2"),
        ({"num_clients": 2, "kind": "natural", "natural": np.repeat([0, 1], [1995, 5])}, r"\[1\]"),
        ({"num_clients": 2, "kind": "natural", "natural": np.zeros(5, np.int64)}, "shape"),
        ({"num_clients": 5, "kind": "iid", "rng": 0}, "rng"),
    ],
)
def test_bad_arguments_raise_configuration_error(kwargs, fragment):
    kwargs = {"rng": _RNG, **kwargs}
    with pytest.raises(ConfigurationError, match=fragment):
        partition(_labels(), **kwargs)


@pytest.mark.parametrize("labels", [np.zeros((10, 2), np.int64), np.linspace(0, 1, 20)])
def test_bad_labels_raise_configuration_error(labels):
    with pytest.raises(ConfigurationError, match="labels"):
        partition(labels, num_clients=1, kind="iid", rng=_RNG, min_per_client=1)
