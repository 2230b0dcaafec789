"""Tests of secfl.training.trainer's ``fit`` with a loop trainer defined here (not one secfl ships): the loop calls
its hooks, the delta is what it trained, and the DpSgd wrapper wraps it like any other loop trainer."""

import copy
import math
from typing import ClassVar

import numpy as np
import pytest
import torch

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params
from secfl.training import DpSgd, DpSgdConfig, Hyper, LocalResult, LoopTrainer, Setup, SgdTrainer, Task, Trainer, fit

HYPER = Hyper(epochs=2, batch_size=10, lr=0.2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LastLayerOnly(LoopTrainer):
    """Fine-tunes only the parameters of the model's last module; records every ``before_step`` call."""

    name: ClassVar[str] = "last_layer"

    def __init__(self) -> None:
        self.steps: list[tuple[int, int]] = []

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        trained = copy.deepcopy(task.model).train()
        last = list(trained.children())[-1]
        trainable = {id(p) for p in last.parameters()}
        for p in trained.parameters():
            p.requires_grad_(id(p) in trainable)
        optimizer = torch.optim.SGD([p for p in trained.parameters() if p.requires_grad], lr=task.hyper.lr)
        return Setup(trained, optimizer, inputs, targets, task.hyper.batch_size, stream=stream)

    def before_step(self, setup: Setup, step: int, total_steps: int) -> None:
        self.steps.append((step, total_steps))

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        delta = flatten(setup.extra.get("plain", setup.module)) - flatten(task.model)
        return LocalResult(delta=delta, num_examples=len(setup.targets), loss=loss, metrics={"custom": 1.0})


def _model() -> torch.nn.Module:
    return build_model("mlp", input_shape=(6,), num_classes=3, hidden=5, seed=0)  # Flatten, Linear, ReLU, Linear


def _data(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.standard_normal((n, 6)) + y[:, None]).astype(np.float32), y.astype(np.int64)


def _last_layer_mask(model: torch.nn.Module) -> np.ndarray:
    last = {id(p) for p in list(model.children())[-1].parameters()}
    return np.concatenate([np.full(p.numel(), id(p) in last) for p in model.parameters()])


def test_fit_runs_the_custom_loop_and_only_the_unfrozen_coordinates_move():
    model, (x, y) = _model(), _data()
    before = flatten(model)
    trainer = LastLayerOnly()
    assert isinstance(trainer, Trainer) and trainer.supports_dp
    result = fit(trainer, Task(model, x, y, 4, HYPER))
    mask = _last_layer_mask(model)
    assert 0 < mask.sum() < num_params(model)
    assert result.delta.shape == (num_params(model),) and result.delta.dtype == np.float32
    assert np.all(result.delta[~mask] == 0) and np.all(result.delta[mask] != 0)
    assert trainer.steps == [(s, 8) for s in range(8)]  # 2 epochs of ceil(40 / 10) batches, counted from 0
    assert result.num_examples == 40 and math.isfinite(result.loss) and dict(result.metrics) == {"custom": 1.0}
    assert np.array_equal(flatten(model), before) and all(p.requires_grad for p in model.parameters())
    # train() is fit(); the same seed gives the same delta, the same batches as SgdTrainer
    again = LastLayerOnly().train(Task(model, x, y, 4, HYPER))
    assert np.array_equal(again.delta, result.delta) and again.loss == result.loss
    plain = SgdTrainer().train(Task(model, x, y, 4, HYPER))
    assert np.any(plain.delta[~mask] != 0) and not np.allclose(plain.delta[mask], result.delta[mask])


def test_dp_sgd_wraps_the_custom_trainer():
    model, (x, y) = _model(), _data()
    task = Task(model, x, y, 4, HYPER)
    config = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    trainer = LastLayerOnly()
    private = trainer.train(task, DpSgd(config))
    plain = LastLayerOnly().train(task)
    mask = _last_layer_mask(model)
    assert not np.allclose(private.delta, plain.delta)
    assert np.all(private.delta[~mask] == 0) and np.all(private.delta[mask] != 0)  # frozen: neither trained nor noised
    assert set(private.state) == {"dp_sgd", "epsilon"} and 0 < private.state["epsilon"] < math.inf
    assert private.state["dp_sgd"]["history"] == [(1.0, 0.25, 8)]  # Poisson steps at q = 10 / 40, 2 epochs
    assert [s for s, _ in trainer.steps] == list(range(8)) and {t for _, t in trainer.steps} == {8}
    assert dict(private.metrics) == {"custom": 1.0}
    again = LastLayerOnly().train(task, DpSgd(config))
    assert np.array_equal(again.delta, private.delta) and again.state == private.state
    later = LastLayerOnly().train(Task(model, x, y, 4, HYPER, state=private.state), DpSgd(config))
    assert later.state["epsilon"] > private.state["epsilon"]  # the accountant continues from the state


def test_fit_rejects_what_is_not_a_task_and_a_base_loop_trainer_is_abstract():
    model, (x, y) = _model(), _data()
    with pytest.raises(ConfigurationError, match="Task"):
        fit(LastLayerOnly(), {"model": model, "x": x, "y": y})
    with pytest.raises(NotImplementedError):
        LoopTrainer().train(Task(model, x, y, 0))
