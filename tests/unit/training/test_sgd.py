"""Tests of secfl.training.sgd and secfl.training.evaluate: deterministic local SGD returning a delta (through
``local_train`` and ``SgdTrainer``/``Task``), and evaluation."""

import numpy as np
import pytest
import torch

from secfl.exceptions import ConfigurationError
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import flatten, unflatten
from secfl.training import Hyper, LocalResult, SgdTrainer, Task, Trainer, evaluate, local_train


def _blobs(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian blobs in 5-D: an easy problem."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.standard_normal((n, 5)).astype(np.float32) + 3.0 * (2 * y[:, None] - 1)
    return x.astype(np.float32), y.astype(np.int64)


def _apply(model: torch.nn.Module, result: LocalResult) -> None:
    unflatten(model, flatten(model) + result.delta)


def test_local_train_learns_an_easy_problem():
    x, y = _blobs()
    model = build_model("logreg", input_shape=(5,), num_classes=2, seed=0)
    accuracy_before, loss_before = evaluate(model, x, y)
    result = local_train(model, x, y, epochs=3, batch_size=32, lr=0.1, seed=0)
    assert result.num_examples == 400 and result.delta.dtype == np.float32
    assert result.delta.shape == flatten(model).shape
    _apply(model, result)
    accuracy_after, loss_after = evaluate(model, x, y)
    assert loss_after < 0.5 * loss_before and accuracy_after > 0.98
    assert 0 < result.loss < loss_before


def test_local_train_reduces_loss_on_digits():
    ds = load_dataset("digits", seed=0)
    model = build_model("cnn", input_shape=ds.input_shape, num_classes=10, seed=0)
    _, loss_before = evaluate(model, ds.x_train, ds.y_train)
    x, y = ds.x_train[:500], ds.y_train[:500]
    result = local_train(model, x, y, epochs=2, batch_size=20, lr=0.05, seed=1, momentum=0.9)
    _apply(model, result)
    accuracy, loss_after = evaluate(model, ds.x_test, ds.y_test)
    assert loss_after < loss_before and accuracy > 0.7


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_local_train_is_deterministic_for_a_seed(kind):
    ds = load_dataset("digits", seed=0)
    model = build_model(kind, input_shape=ds.input_shape, num_classes=10, seed=0)
    x, y = ds.x_train[:160], ds.y_train[:160]
    kwargs = {"epochs": 2, "batch_size": 16, "lr": 0.05, "momentum": 0.5, "weight_decay": 1e-4}
    a = local_train(model, x, y, seed=3, **kwargs)
    b = local_train(model, x, y, seed=3, **kwargs)
    c = local_train(model, x, y, seed=4, **kwargs)
    assert np.array_equal(a.delta, b.delta) and a.loss == b.loss
    assert not np.array_equal(a.delta, c.delta)


def test_local_train_leaves_the_input_model_untouched():
    x, y = _blobs()
    model = build_model("mlp", input_shape=(5,), num_classes=2, hidden=8, seed=0)
    model.eval()
    before = flatten(model)
    result = local_train(model, x, y, epochs=1, batch_size=10, lr=0.5, seed=0)
    assert np.array_equal(flatten(model), before) and not model.training
    assert np.abs(result.delta).max() > 0
    assert all(p.grad is None for p in model.parameters())


def test_evaluate_matches_manual_computation_and_restores_mode():
    x, y = _blobs(seed=1)
    model = build_model("mlp", input_shape=(5,), num_classes=2, hidden=4, seed=2)
    model.train()
    accuracy, loss = evaluate(model, x, y, batch_size=7)
    assert model.training
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    expected_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
    expected_accuracy = float((logits.argmax(1).numpy() == y).mean())
    assert 0.0 <= accuracy <= 1.0 and accuracy == pytest.approx(expected_accuracy)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    model.eval()
    evaluate(model, x, y)
    assert not model.training


_X, _Y = _blobs(20)
_GOOD = {"epochs": 1, "batch_size": 4, "lr": 0.1, "seed": 0}


@pytest.mark.parametrize(
    ("x", "y", "overrides", "fragment"),
    [
        (_X, _Y, {"epochs": 0}, "epochs"),
        (_X, _Y, {"batch_size": 0}, "batch_size"),
        (_X, _Y, {"lr": 0.0}, "lr"),
        (_X, _Y, {"lr": float("nan")}, "lr"),
        (_X, _Y, {"seed": -1}, "seed"),
        (_X, _Y, {"momentum": 1.0}, "momentum"),
        (_X, _Y, {"weight_decay": -0.1}, "weight_decay"),
        (_X[:0], _Y[:0], {}, "non-empty"),
        (_X, _Y[:10], {}, "same n"),
        (_X, _Y.astype(np.float32), {}, "integer labels"),
    ],
)
def test_local_train_bad_arguments_raise_configuration_error(x, y, overrides, fragment):
    model = build_model("logreg", input_shape=(5,), num_classes=2, seed=0)
    with pytest.raises(ConfigurationError, match=fragment):
        local_train(model, x, y, **{**_GOOD, **overrides})


def test_evaluate_bad_arguments_raise_configuration_error():
    model = build_model("logreg", input_shape=(5,), num_classes=2, seed=0)
    with pytest.raises(ConfigurationError, match="batch_size"):
        evaluate(model, _X, _Y, batch_size=0)
    with pytest.raises(ConfigurationError, match="non-empty"):
        evaluate(model, _X[:0], _Y[:0])


def test_local_train_is_the_sgd_trainer_on_a_task():
    x, y = _blobs(60)
    model = build_model("mlp", input_shape=(5,), num_classes=2, hidden=8, seed=0)
    hyper = Hyper(epochs=2, batch_size=7, lr=0.1, momentum=0.5, weight_decay=1e-3)
    trainer = SgdTrainer()
    assert isinstance(trainer, Trainer) and trainer.supports_dp and trainer.name == "sgd"
    result = trainer.train(Task(model, x, y, 5, hyper))
    reference = local_train(model, x, y, epochs=2, batch_size=7, lr=0.1, seed=5, momentum=0.5, weight_decay=1e-3)
    assert isinstance(result, LocalResult) and np.array_equal(result.delta, reference.delta)
    assert result.loss == reference.loss and result.num_examples == 60
    assert dict(result.state) == {} and dict(result.metrics) == {} and result.detail is None
    assert result.loss_examples is None  # the loss is over all num_examples


def test_sgd_trainer_rejects_a_non_task_and_a_seed_beyond_64_bits():
    x, y = _blobs(20)
    model = build_model("logreg", input_shape=(5,), num_classes=2, seed=0)
    with pytest.raises(ConfigurationError, match="Task"):
        SgdTrainer().train((model, x, y))
    with pytest.raises(ConfigurationError, match="seed"):
        SgdTrainer().train(Task(model, x, y, 2**64))
    with pytest.raises(ConfigurationError, match="lr"):
        Hyper(lr=-1.0)
