"""Tests of secfl.fl.params: the flat-vector boundary between torch models and numpy."""

import numpy as np
import pytest
import torch

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params, unflatten


def _model():
    return build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=0)


def test_flatten_follows_named_parameters_order():
    model = _model()
    vector = flatten(model)
    expected = np.concatenate([p.detach().numpy().ravel() for _, p in model.named_parameters()])
    assert vector.dtype == np.float32 and vector.shape == (num_params(model),)
    assert np.array_equal(vector, expected)
    assert num_params(model) == sum(p.numel() for p in model.parameters())


def test_flatten_returns_a_copy():
    model = _model()
    vector = flatten(model)
    vector[:] = 0.0
    assert np.any(flatten(model) != 0.0)


def test_round_trip_between_models():
    source, target = _model(), build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=1)
    assert not np.array_equal(flatten(source), flatten(target))
    unflatten(target, flatten(source))
    assert np.array_equal(flatten(target), flatten(source))
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(source(x), target(x))


def test_unflatten_accepts_float64_and_writes_in_place():
    model = _model()
    first = next(model.parameters())
    vector = np.arange(num_params(model), dtype=np.float64) / 1000
    unflatten(model, vector)
    assert next(model.parameters()) is first
    np.testing.assert_allclose(flatten(model), vector.astype(np.float32))


def test_unflatten_accepts_read_only_vectors_without_warning(recwarn):
    model = _model()
    vector = flatten(model) * 2
    vector.flags.writeable = False
    unflatten(model, vector)
    assert np.array_equal(flatten(model), vector) and len(recwarn) == 0


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: np.zeros(d - 1, np.float32), "length"),
        (lambda d: np.zeros(d + 1, np.float32), "length"),
        (lambda d: np.zeros((1, d), np.float32), "1-D"),
        (lambda d: np.zeros(d, np.int64), "float"),
        (lambda d: [0.0] * d, "list"),
        (lambda d: np.full(d, np.nan, np.float32), "NaN"),
        (lambda d: np.full(d, np.inf, np.float32), "infinite"),
    ],
)
def test_unflatten_rejects_bad_vectors_and_leaves_model(make, fragment):
    model = _model()
    before = flatten(model)
    with pytest.raises(ConfigurationError, match=fragment):
        unflatten(model, make(num_params(model)))
    assert np.array_equal(flatten(model), before)
