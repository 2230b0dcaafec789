"""Tests of secfl.training.gradient: one minibatch gradient per round with worker momentum carried in the state."""

import numpy as np
import pytest
import torch
from torch.nn import functional

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params
from secfl.training import DpSgd, DpSgdConfig, GradientTrainer, Hyper, Task, Trainer

BETA, LR = 0.9, 0.1


def _data(n: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.standard_normal((n, 6)) + y[:, None]).astype(np.float32), y.astype(np.int64)


def _model() -> torch.nn.Module:
    return build_model("mlp", input_shape=(6,), num_classes=3, hidden=5, seed=0)


def _gradient(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, seed: int, batch_size: int,
              weight_decay: float = 0.0) -> np.ndarray:
    """The minibatch gradient computed independently: the same seeded draw, plain autograd on a copy."""
    batch = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:batch_size]
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]
    logits = torch.func.functional_call(model, dict(zip(names, params)), (torch.from_numpy(x)[batch],))
    loss = functional.cross_entropy(logits, torch.from_numpy(y)[batch])
    grads = torch.autograd.grad(loss, params)
    g = np.concatenate([t.reshape(-1).numpy() for t in grads]).astype(np.float64)
    return g + weight_decay * flatten(model).astype(np.float64)


def test_first_round_sends_minus_lr_times_the_minibatch_gradient_and_leaves_the_model_alone():
    model, (x, y) = _model(), _data()
    model.eval()
    before = flatten(model)
    trainer = GradientTrainer()
    assert isinstance(trainer, Trainer) and not trainer.supports_dp and trainer.name == "gradient"
    hyper = Hyper(batch_size=8, lr=LR, momentum=BETA, weight_decay=1e-2)
    result = trainer.train(Task(model, x, y, 3, hyper))
    g = _gradient(model, x, y, 3, 8, weight_decay=1e-2)
    m = result.state["momentum"]
    assert isinstance(m, torch.Tensor) and m.dtype == torch.float32 and m.shape == (num_params(model),)
    np.testing.assert_allclose(m.numpy(), g, rtol=1e-5, atol=1e-7)  # m = g in the first round
    assert result.delta.dtype == np.float32 and np.array_equal(result.delta, (-LR * m.numpy()).astype(np.float32))
    assert result.num_examples == 50 and result.loss_examples == 8 and result.loss > 0
    assert np.array_equal(flatten(model), before) and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert trainer.train(Task(model, x, y, 3, Hyper(batch_size=80))).loss_examples == 50  # batch beyond the data


def test_second_round_continues_the_momentum_from_the_returned_state():
    model, (x, y) = _model(), _data()
    hyper = Hyper(batch_size=8, lr=LR, momentum=BETA)
    trainer = GradientTrainer()
    first = trainer.train(Task(model, x, y, 1, hyper))
    fresh = trainer.train(Task(model, x, y, 2, hyper))  # g of round 2 alone (no state)
    second = trainer.train(Task(model, x, y, 2, hyper, state=first.state))
    m1, g2 = first.state["momentum"].numpy(), fresh.state["momentum"].numpy()
    assert not np.allclose(m1, g2)  # another batch: the momentum matters
    expected = BETA * m1.astype(np.float64) + (1 - BETA) * g2.astype(np.float64)
    np.testing.assert_allclose(second.state["momentum"].numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(second.delta, -LR * expected, rtol=1e-5, atol=1e-8)
    assert np.array_equal(first.state["momentum"].numpy(), m1)  # the passed state is not modified
    assert second.loss == fresh.loss
    again = trainer.train(Task(model, x, y, 2, hyper, state=first.state))
    assert np.array_equal(again.delta, second.delta)  # deterministic


def test_refuses_a_privacy_wrapper_and_bad_arguments():
    model, (x, y) = _model(), _data()
    with pytest.raises(ConfigurationError, match="DP-SGD"):
        GradientTrainer().train(Task(model, x, y, 0), DpSgd(DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)))
    with pytest.raises(ConfigurationError, match="seed"):
        GradientTrainer().train(Task(model, x, y, -1))
    with pytest.raises(ConfigurationError, match="same n"):
        GradientTrainer().train(Task(model, x, y[:-1], 0))
