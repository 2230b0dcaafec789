"""Tests of secfl.training.dpsgd (the DpSgd wrapper around SgdTrainer): shapes, determinism, accounting, clipping,
noise scale, modes, validation."""

import copy
import math
import warnings

import numpy as np
import opacus
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch import nn

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params, unflatten
from secfl.training import DpSgd, DpSgdConfig, Hyper, SgdTrainer, Task, evaluate

MODES = ["hooks", "functorch", "ghost"]
SMALL = {
    "logreg": ((20,), {}),
    "mlp": ((20,), {"hidden": 8}),
    "cnn": ((1, 8, 8), {"channels": 4, "groups": 2, "hidden": 8}),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add spin-wait overhead (10x slower on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(shape, n=64, classes=2, seed=0):
    """Linearly separable blobs: the class shifts the first coordinate by +-2."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    x.reshape(n, -1)[:, 0] += 4.0 * y - 2.0
    return x, y


def _model(kind, classes=2):
    shape, options = SMALL[kind]
    return build_model(kind, input_shape=shape, num_classes=classes, seed=0, **options), shape


def _train(model, x, y, config, *, seed=7, accountant_state=None, **kw):
    """SgdTrainer under DpSgd(config); ``accountant_state`` is the client's earlier ``state["dp_sgd"]``."""
    hyper = Hyper(**{"epochs": 1, "batch_size": 16, "lr": 0.1, **kw})
    state = {} if accountant_state is None else {"dp_sgd": accountant_state}
    return SgdTrainer().train(Task(model, x, y, seed, hyper, state=state), DpSgd(config))


@pytest.mark.parametrize("kind", list(SMALL))
def test_delta_shape_model_untouched_and_deterministic(kind):
    model, shape = _model(kind)
    x, y = _data(shape)
    before = flatten(model)
    config = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    a, b = _train(model, x, y, config), _train(model, x, y, config)
    other = _train(model, x, y, config, seed=8)
    assert a.delta.shape == (num_params(model),) and a.delta.dtype == np.float32
    assert np.all(np.isfinite(a.delta)) and np.any(a.delta != 0)
    assert np.array_equal(flatten(model), before)
    assert np.array_equal(a.delta, b.delta) and a.loss == b.loss and a.state == b.state
    assert not np.array_equal(a.delta, other.delta)
    assert a.num_examples == 64 and math.isfinite(a.loss) and a.loss > 0
    assert set(a.state) == {"dp_sgd", "epsilon"} and 0 < a.state["epsilon"] < math.inf


def test_epsilon_matches_independent_rdp_and_accumulates_across_calls():
    model, shape = _model("logreg")
    x, y = _data(shape)
    config = DpSgdConfig(noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
    first = _train(model, x, y, config, epochs=2)
    state = copy.deepcopy(first.state["dp_sgd"])
    second = _train(model, x, y, config, epochs=2, accountant_state=first.state["dp_sgd"])
    assert first.state["dp_sgd"] == state  # the passed-back state is not mutated
    for result, steps in [(first, 8), (second, 16)]:  # 64 examples, batch 16: 4 steps per epoch, q = 0.25
        reference = RDPAccountant()
        for _ in range(steps):
            reference.step(noise_multiplier=1.1, sample_rate=16 / 64)
        assert result.state["epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-9)
    assert 0 < first.state["epsilon"] < second.state["epsilon"] < math.inf
    assert second.state["dp_sgd"] == {"history": [(1.1, 0.25, 16)], "mechanism": "rdp"}
    assert not np.array_equal(first.delta, second.delta)  # same seed, but the noise moves on with the steps


def test_prv_accountant_matches_independent_prv_and_zero_noise_is_infinite():
    model, shape = _model("logreg")
    x, y = _data(shape)
    result = _train(model, x, y, DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0, accountant="prv"))
    reference = PRVAccountant()
    reference.history = [(1.0, 0.25, 4)]
    assert result.state["epsilon"] == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-6)
    assert result.state["dp_sgd"]["mechanism"] == "prv"
    for accountant in ["rdp", "prv"]:
        none = _train(model, x, y, DpSgdConfig(noise_multiplier=0.0, max_grad_norm=1.0, accountant=accountant))
        assert none.state["epsilon"] == math.inf


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")  # tiny epsilon at sigma = 1000
@pytest.mark.parametrize("mode", MODES)
def test_huge_noise_dominates_delta_and_scales_with_the_multiplier(mode):
    model, _ = _model("cnn", classes=10)
    x, y = _data((1, 8, 8), classes=10)
    d, lr, clip = num_params(model), 1.0, 1.0

    def run(sigma):
        config = DpSgdConfig(sigma, clip, grad_sample_mode=mode, poisson_sampling=False)
        return _train(model, x, y, config, batch_size=64, lr=lr).delta  # one step over the whole batch

    small, large = run(1000.0), run(2000.0)
    expected = lr * 1000.0 * clip * math.sqrt(d) / 64  # noise std sigma*C on the sum, divided by the batch
    assert np.linalg.norm(small) == pytest.approx(expected, rel=0.1)
    # same seed, same noise draw: doubling sigma doubles the delta up to the (norm <= lr*C) signal
    assert np.linalg.norm(large - 2 * small) <= lr * clip * (1 + 1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_per_sample_gradients_are_clipped_before_averaging(mode):
    model, shape = _model("mlp")
    x, y = _data(shape, n=16)
    lr, clip = 0.5, 1e-3
    config = DpSgdConfig(noise_multiplier=0.0, max_grad_norm=clip, grad_sample_mode=mode, poisson_sampling=False)
    delta = _train(model, x, y, config, batch_size=16, lr=lr).delta  # exactly one step of one batch
    clipped, raw = [], []
    for i in range(16):
        model.zero_grad()
        nn.functional.cross_entropy(model(torch.tensor(x[i : i + 1])), torch.tensor(y[i : i + 1])).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
        raw.append(g)
        clipped.append(g * min(1.0, clip / np.linalg.norm(g)))
    model.zero_grad()
    assert np.linalg.norm(lr * np.mean(raw, axis=0)) > 20 * lr * clip  # without clipping the bound would fail
    assert np.linalg.norm(delta) <= lr * clip * (1 + 1e-4)
    np.testing.assert_allclose(delta, -lr * np.mean(clipped, axis=0), atol=1e-8)


class _BatchSizes(nn.Module):
    """A parameter-free layer that records the size of every batch it sees (shared across deep copies)."""

    seen: list[int] = []

    def forward(self, x):
        self.seen.append(len(x))
        return x


@pytest.mark.parametrize("poisson", [True, False])
def test_poisson_flag_selects_the_batch_sampler(poisson):
    recorder, (model, shape) = _BatchSizes(), _model("logreg")
    x, y = _data(shape)
    _BatchSizes.seen.clear()
    config = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=poisson)
    result = _train(nn.Sequential(recorder, model), x, y, config, epochs=2)
    assert len(_BatchSizes.seen) == 8 and result.state["dp_sgd"]["history"] == [(1.0, 0.25, 8)]
    if poisson:  # each example joins each batch independently with q = 0.25
        assert len(set(_BatchSizes.seen)) > 1
    else:
        assert _BatchSizes.seen == [16] * 8


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_learns_a_separable_problem_with_small_noise(mode):
    model, shape = _model("logreg")
    x, y = _data(shape, n=64, seed=1)
    config = DpSgdConfig(noise_multiplier=0.3, max_grad_norm=1.0, grad_sample_mode=mode)
    result = _train(model, x, y, config, epochs=8, lr=0.5)
    trained = copy.deepcopy(model)
    unflatten(trained, flatten(model) + result.delta)
    x_test, y_test = _data(shape, n=400, seed=2)
    accuracy, _ = evaluate(trained, x_test, y_test)
    assert evaluate(model, x_test, y_test)[0] < 0.8 < accuracy  # chance is 0.5
    assert 0 < result.state["epsilon"] < math.inf


@pytest.mark.parametrize(
    "kwargs",
    [
        {"noise_multiplier": -1.0},
        {"noise_multiplier": float("nan")},
        {"noise_multiplier": True},
        {"max_grad_norm": 0.0},
        {"max_grad_norm": float("inf")},
        {"grad_sample_mode": "ew"},
        {"accountant": "gdp"},
        {"delta": 0.0},
        {"delta": 1.0},
        {"delta": None},
        {"poisson_sampling": "yes"},
    ],
)
def test_bad_config_raises(kwargs):
    with pytest.raises(ConfigurationError):
        DpSgdConfig(**{"noise_multiplier": 1.0, "max_grad_norm": 1.0, **kwargs})


def test_bad_arguments_state_and_batchnorm_model_raise():
    model, shape = _model("logreg")
    x, y = _data(shape)
    config = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0)
    for kw in [{"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}, {"seed": -1}, {"momentum": 1.0}]:
        with pytest.raises(ConfigurationError):
            _train(model, x, y, config, **kw)
    with pytest.raises(ConfigurationError):
        _train(model, x, y[:10], config)
    with pytest.raises(ConfigurationError, match="DpSgdConfig"):
        DpSgd({"noise_multiplier": 1.0})
    rdp_state = _train(model, x, y, config).state["dp_sgd"]
    for bad in [rdp_state, {"history": [("a", 1, 1)], "mechanism": "prv"}, {"history": []}, [1, 2]]:
        with pytest.raises(ConfigurationError, match="accountant_state"):
            _train(model, x, y, DpSgdConfig(1.0, 1.0, accountant="prv"), accountant_state=bad)
    batchnorm = nn.Sequential(nn.Flatten(), nn.Linear(20, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    with pytest.raises(ConfigurationError, match="GroupNorm"):
        _train(batchnorm, x, y, config)


def test_silences_only_its_own_known_warnings():
    model, shape = _model("cnn")
    x, y = _data(shape)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _train(model, x, y, DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0))
        assert not any("Secure RNG" in str(w.message) or "backward hook" in str(w.message) for w in caught)
        opacus.PrivacyEngine(accountant="rdp")  # outside DpSgd the warning still shows
        assert any("Secure RNG" in str(w.message) for w in caught)
