"""Tests of secfl.fl.data: real MNIST/digits loading, Synthetic(alpha, beta) generation and validation."""

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.fl.data import DATASETS, load_dataset


def test_mnist_is_the_real_5k_sample():
    ds = load_dataset("mnist", seed=0)
    assert ds.name == "mnist" and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert np.array_equal(np.bincount(labels), np.full(10, 500))
    assert np.array_equal(np.bincount(ds.y_test), np.full(10, 100))  # stratified split
    assert ds.natural_clients is None


def test_mnist_is_standardised_with_train_statistics():
    ds = load_dataset("mnist", seed=0)
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-4
    assert abs(float(ds.x_test.mean())) < 0.05
    # Black background maps to -mean/std; classic MNIST statistics give -0.1307 / 0.3081 = -0.424.
    assert np.isclose(ds.x_train.min(), ds.x_test.min()) and abs(float(ds.x_train.min()) + 0.424) < 0.02
    assert 2.5 < ds.x_train.max() < 3.2


def test_mnist_train_split_is_shuffled():
    y = load_dataset("mnist", seed=0).y_train
    label_changes = int(np.count_nonzero(np.diff(y)))
    assert label_changes > 0.8 * len(y)  # sorted data would change label only 9 times
    assert len(np.unique(y[:100])) == 10


def test_same_seed_same_split_and_different_seed_differs():
    a, b, c = (load_dataset("mnist", seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_returned_arrays_do_not_share_the_cache():
    first = load_dataset("mnist", seed=0)
    first.x_train[:] = 0.0
    assert load_dataset("mnist", seed=0).x_train.std() > 0.5


def test_test_fraction_sets_split_size():
    ds = load_dataset("mnist", seed=0, test_fraction=0.5)
    assert len(ds.y_train) == len(ds.y_test) == 2500


def test_digits_shapes():
    ds = load_dataset("digits", seed=1)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.x_train.shape[1:] == (1, 8, 8) and ds.x_train.dtype == np.float32
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert set(np.unique(ds.y_test)) == set(range(10))


def test_synthetic_has_natural_clients():
    ds = load_dataset("synthetic", seed=0)
    assert ds.input_shape == (60,) and ds.x_train.shape[1] == 60 and ds.num_classes == 10
    assert ds.natural_clients is not None and ds.natural_clients.dtype == np.int64
    assert ds.natural_clients.shape == ds.y_train.shape
    assert set(np.unique(ds.natural_clients)) == set(range(20))
    counts = np.bincount(ds.natural_clients)
    assert counts.min() >= 0.8 * 50 - 1 and counts.max() <= 1000
    assert counts.max() > 2 * counts.min()  # lognormal sizes are unbalanced


def test_synthetic_clients_are_heterogeneous():
    ds = load_dataset("synthetic", seed=0, alpha=1.0, beta=1.0)
    overall = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    distances = []
    for k in range(20):
        mine = ds.y_train[ds.natural_clients == k]
        distances.append(0.5 * np.abs(np.bincount(mine, minlength=10) / len(mine) - overall).sum())
    assert np.mean(distances) > 0.3  # total-variation distance from the pooled label distribution


def test_synthetic_params_and_determinism():
    kwargs = {"num_clients": 5, "dim": 12, "num_classes": 3, "min_samples": 30, "max_samples": 40}
    a = load_dataset("synthetic", seed=7, **kwargs)
    b = load_dataset("synthetic", seed=7, **kwargs)
    assert a.input_shape == (12,) and a.num_classes == 3 and a.y_train.max() < 3
    assert set(np.unique(a.natural_clients)) == set(range(5))
    assert 150 <= len(a.y_train) + len(a.y_test) <= 200
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.natural_clients, b.natural_clients)
    assert not np.array_equal(a.x_train, load_dataset("synthetic", seed=8, **kwargs).x_train)


def test_dataset_names():
    assert DATASETS == ("mnist", "digits", "synthetic")


@pytest.mark.parametrize(
    ("name", "kwargs", "fragment"),
    [
        ("cifar", {}, "mnist, digits, synthetic"),
        ("mnist", {"test_fraction": 0.0}, "test_fraction"),
        ("mnist", {"test_fraction": 1.0}, "test_fraction"),
        ("digits", {"test_fraction": -0.2}, "test_fraction"),
        ("mnist", {"alpha": 0.5}, "alpha"),
        ("synthetic", {"gamma": 1.0}, "gamma"),
        ("synthetic", {"num_clients": 0}, "num_clients"),
        ("synthetic", {"alpha": -1.0}, "alpha"),
        ("synthetic", {"min_samples": 60, "max_samples": 50}, "max_samples"),
        ("mnist", {"seed": -1}, "seed"),
        (
            "synthetic",
            {"test_fraction": 0.001, "num_clients": 2, "min_samples": 10, "max_samples": 10},
            "test_fraction",
        ),
    ],
)
def test_bad_arguments_raise_configuration_error(name, kwargs, fragment):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ConfigurationError, match=fragment):
        load_dataset(name, **kwargs)
