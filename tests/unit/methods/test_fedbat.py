"""Tests of secfl.methods.fedbat (binarize, trainer): the stochastic binarizer, its gradients, and FedBAT local
training without DP-SGD (through the same BAT layers and trainer as the DP route)."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from secfl.exceptions import ConfigurationError
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params, unflatten
from secfl.methods.fedbat import FedBatResult, FedBatTrainer, binarize, fedbat_local_train
from secfl.training import Hyper, LocalResult, Task, Trainer, evaluate, local_train

ALPHA = 0.25


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mlp() -> torch.nn.Module:
    return build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=16, seed=0)


def _random_digits(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Digits-shaped noise: [n, 1, 8, 8] float32 inputs and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)


def _layer_slices(model: torch.nn.Module) -> dict[str, slice]:
    slices, offset = {}, 0
    for name, p in model.named_parameters():
        slices[name] = slice(offset, offset + p.numel())
        offset += p.numel()
    return slices


# ----------------------------------------------------------------------------------------------- binarize


def test_binarize_outputs_are_exactly_plus_or_minus_alpha():
    m = (torch.rand(1000, generator=_gen(1), dtype=torch.float64) * 4 - 2) * ALPHA  # in [-2 alpha, 2 alpha]
    out = binarize(m, torch.tensor(ALPHA, dtype=torch.float64), generator=_gen(2))
    assert out.shape == m.shape and out.dtype == m.dtype
    assert set(out.abs().unique().tolist()) == {ALPHA}
    beyond = m.abs() > ALPHA
    assert torch.equal(out[beyond], ALPHA * torch.sign(m[beyond]))
    # both signs occur inside the interval
    inside = out[~beyond]
    assert (inside > 0).any() and (inside < 0).any()


def test_binarize_is_unbiased_inside_and_saturates_beyond():
    samples = 200_000
    inside = torch.linspace(-ALPHA, ALPHA, 11, dtype=torch.float64)  # includes m = -alpha, 0, +alpha exactly
    beyond = torch.tensor([-3 * ALPHA, -1.01 * ALPHA, 1.01 * ALPHA, 5 * ALPHA], dtype=torch.float64)
    m = torch.cat([inside, beyond])
    out = binarize(m.expand(samples, -1), torch.tensor(ALPHA, dtype=torch.float64), generator=_gen(0))
    mean = out.mean(dim=0)
    x = inside / ALPHA
    stderr = ALPHA * torch.sqrt(torch.clamp(1 - x**2, min=0)) / math.sqrt(samples)
    assert torch.all((mean[: len(inside)] - inside).abs() <= 6 * stderr + 1e-12)
    assert torch.equal(mean[len(inside) :], ALPHA * torch.sign(beyond))
    assert torch.equal(out[:, len(inside) :], (ALPHA * torch.sign(beyond)).expand(samples, -1))


def test_binarize_is_reproducible_with_a_generator_and_uses_the_global_one_otherwise():
    m = torch.zeros(500)
    alpha = torch.tensor(0.1)
    assert torch.equal(binarize(m, alpha, generator=_gen(7)), binarize(m, alpha, generator=_gen(7)))
    assert not torch.equal(binarize(m, alpha, generator=_gen(7)), binarize(m, alpha, generator=_gen(8)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        first = binarize(m, alpha)
        torch.manual_seed(3)
        assert torch.equal(binarize(m, alpha), first)
        assert not torch.equal(binarize(m, 0.1, generator=None), binarize(m, 0.1))  # the global stream advances


def test_binarize_gradient_wrt_m_is_the_clipped_straight_through_estimator():
    m = torch.tensor([-0.5, -ALPHA, -0.1, 0.0, 0.2, ALPHA, 0.26, 1.0], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(ALPHA, dtype=torch.float64, requires_grad=True)
    g = torch.arange(1.0, 9.0, dtype=torch.float64)
    binarize(m, alpha, generator=_gen(0)).backward(g)
    expected = torch.where(m.detach().abs() <= ALPHA, g, torch.zeros_like(g))
    assert torch.equal(m.grad, expected)
    assert torch.equal(expected[[0, 6, 7]], torch.zeros(3, dtype=torch.float64))


def test_binarize_alpha_gradient_matches_the_formula_on_one_sample():
    torch_gen = _gen(11)
    m = ((torch.rand(64, generator=torch_gen, dtype=torch.float64) * 3 - 1.5) * ALPHA).requires_grad_()
    alpha = torch.tensor(ALPHA, dtype=torch.float64, requires_grad=True)
    w = torch.randn(64, generator=torch_gen, dtype=torch.float64)
    out = binarize(m, alpha, generator=_gen(12))
    (w * out).sum().backward()
    x = m.detach() / ALPHA
    b = (out.detach() / ALPHA + 1) / 2
    assert set(b.unique().tolist()) <= {0.0, 1.0}
    c = torch.where(x > 1, 1.0, torch.where(x < -1, -1.0, (2 * b - 1) - x))
    assert torch.allclose(alpha.grad, (w * c).sum(), rtol=1e-12, atol=1e-12)
    assert alpha.grad.shape == alpha.shape


def test_binarize_alpha_gradient_matches_finite_differences_of_the_expectation():
    """E[<w, B(m; a)>] = <w, clip(m, -a, a)>; the mean analytic dL/da must match its derivative."""
    samples = 100_000
    gen = _gen(5)
    m = torch.tensor([-0.6, -0.3, -0.2, -0.1, 0.0, 0.05, 0.15, 0.22, 0.4, 0.9], dtype=torch.float64)
    w = torch.randn(len(m), generator=gen, dtype=torch.float64)
    alpha = torch.tensor(ALPHA, dtype=torch.float64, requires_grad=True)
    out = binarize(m.expand(samples, -1), alpha, generator=gen)
    ((w * out).sum() / samples).backward()  # alpha.grad = mean over samples of sum_i w_i c_i

    def expected_loss(a: float) -> float:
        return float((w * torch.clamp(m, -a, a)).sum())

    h = 1e-6
    finite_difference = (expected_loss(ALPHA + h) - expected_loss(ALPHA - h)) / (2 * h)
    outside = m.abs() > ALPHA
    assert finite_difference == pytest.approx(float((w * torch.sign(m))[outside].sum()), abs=1e-8)
    x = m[~outside] / ALPHA
    stderr = math.sqrt(float((w[~outside] ** 2 * (1 - x**2)).sum()) / samples)
    assert abs(float(alpha.grad) - finite_difference) <= 6 * stderr
    # The (2b - 1) - x term matters: without "- x" the mean would be off by sum w x, far beyond the noise.
    assert abs(float((w[~outside] * x).sum())) > 20 * stderr


@pytest.mark.parametrize(
    ("m", "alpha", "generator"),
    [
        (torch.zeros(3), torch.tensor(0.0), None),
        (torch.zeros(3), torch.tensor(-0.1), None),
        (torch.zeros(3), torch.tensor(float("nan")), None),
        (torch.zeros(3), torch.tensor([0.1, 0.2]), None),
        (torch.zeros(3), "0.1", None),
        (torch.zeros(3, dtype=torch.int64), torch.tensor(0.1), None),
        (np.zeros(3), torch.tensor(0.1), None),
        (torch.zeros(3), torch.tensor(0.1), 5),
    ],
)
def test_binarize_rejects_bad_arguments(m, alpha, generator):
    with pytest.raises(ConfigurationError):
        binarize(m, alpha, generator=generator)


# ----------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained():
    """One FedBAT run on random digits-shaped data: (model, its state before, result, training kwargs)."""
    model = _mlp()
    before = copy.deepcopy(model.state_dict())
    x, y = _random_digits()
    kwargs = {"epochs": 2, "batch_size": 32, "lr": 0.1, "seed": 3}
    return model, before, fedbat_local_train(model, x, y, **kwargs), (x, y, kwargs)


def test_fedbat_binarized_coordinates_are_exactly_plus_or_minus_alpha(trained):
    model, _, result, _ = trained
    assert isinstance(result, FedBatResult)
    assert result.delta.dtype == np.float32 and result.delta.shape == (num_params(model),)
    assert result.num_examples == 200 and math.isfinite(result.loss)
    slices = _layer_slices(model)
    assert set(result.bits) == set(result.alphas) == {"1.weight", "3.weight"}
    expected_mask = np.zeros(num_params(model), dtype=bool)
    for name, alpha in result.alphas.items():
        expected_mask[slices[name]] = True
        bits = result.bits[name]
        assert bits.dtype == np.uint8 and bits.shape == (dict(model.named_parameters())[name].numel(),)
        assert set(np.unique(bits).tolist()) == {0, 1}
        chunk = result.delta[slices[name]]
        assert np.array_equal(np.abs(chunk), np.full(chunk.shape, np.float32(alpha)))
        assert np.array_equal(chunk, np.float32(alpha) * (2 * bits.astype(np.float32) - 1))
        assert 5e-4 <= alpha <= 5e-2
    assert np.array_equal(result.binarized_mask, expected_mask)
    assert np.all(result.delta[~expected_mask] != 0)  # biases train in full precision


def test_fedbat_leaves_the_model_untouched(trained):
    model, before, _, _ = trained
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters()) and model.training


def test_fedbat_is_deterministic_given_the_seed(trained):
    model, _, result, (x, y, kwargs) = trained
    again = fedbat_local_train(model, x, y, **kwargs)
    assert np.array_equal(again.delta, result.delta) and again.loss == result.loss
    assert again.alphas == result.alphas
    assert all(np.array_equal(again.bits[k], result.bits[k]) for k in result.bits)
    other = fedbat_local_train(model, x, y, **{**kwargs, "seed": kwargs["seed"] + 1})
    assert not np.array_equal(other.delta, result.delta)


def test_fedbat_uplink_bits_count_one_bit_per_binarized_weight(trained):
    model, _, result, _ = trained
    binarized = 64 * 16 + 16 * 10
    full_precision = 16 + 10
    assert result.num_binarized == binarized
    assert result.uplink_bits == binarized + 32 * 2 + 32 * full_precision
    assert result.uplink_bits < 2 * binarized < 32 * num_params(model) / 10


def test_fedbat_result_is_frozen(trained):
    with pytest.raises(dataclasses.FrozenInstanceError):
        trained[2].loss = 0.0


def test_fedbat_trainer_on_a_task_gives_the_same_upload_as_a_local_result(trained):
    model, _, result, (x, y, kwargs) = trained
    trainer = FedBatTrainer()
    assert isinstance(trainer, Trainer) and trainer.supports_dp and trainer.name == "fedbat"
    hyper = Hyper(epochs=kwargs["epochs"], batch_size=kwargs["batch_size"], lr=kwargs["lr"])
    local = trainer.train(Task(model, x, y, kwargs["seed"], hyper))
    assert isinstance(local, LocalResult) and isinstance(local.detail, FedBatResult)
    assert np.array_equal(local.delta, result.delta) and local.loss == result.loss
    assert local.num_examples == result.num_examples and local.detail.alphas == result.alphas
    assert dict(local.metrics) == {"fedbat_uplink_bits": result.uplink_bits}
    assert dict(local.state) == {} and dict(result.state) == {}  # no DP-SGD: nothing to keep
    public = trainer.train(Task(model, x, y, kwargs["seed"], hyper, public={"alpha0": result.alphas}))
    assert not np.array_equal(public.delta, result.delta)  # the public alpha0 replaces mean|m| after the warm-up


def test_warm_up_is_full_precision_sgd_and_sets_alpha0_to_the_mean_update():
    """With rho = 0 and a wide clamp, alpha_l = mean|m_l| after the warm-up, which (momentum 0) is plain SGD
    on the same batches as local_train: phi = 0.5 of 2 epochs is exactly the first epoch."""
    model = _mlp()
    x, y = _random_digits()
    wide = (1e-9, 1e3)
    result = fedbat_local_train(model, x, y, epochs=2, batch_size=32, lr=0.1, seed=4, rho=0.0, alpha_clamp=wide)
    reference = local_train(model, x, y, epochs=1, batch_size=32, lr=0.1, seed=4)
    slices = _layer_slices(model)
    for name, alpha in result.alphas.items():
        assert alpha == pytest.approx(float(np.abs(reference.delta[slices[name]]).mean()), rel=1e-4)
    # with rho > 0 the step size itself is learned after the warm-up
    learned = fedbat_local_train(model, x, y, epochs=2, batch_size=32, lr=0.1, seed=4, rho=6.0, alpha_clamp=wide)
    assert all(abs(learned.alphas[k] / result.alphas[k] - 1) > 1e-3 for k in result.alphas)


def test_fedbat_binarizes_from_the_start_with_phi_zero_and_handles_conv_layers():
    model = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, channels=4, groups=2, hidden=8, seed=0)
    x, y = _random_digits(64)
    result = fedbat_local_train(model, x, y, epochs=1, batch_size=16, lr=0.1, seed=0, phi=0.0)
    names = [n for n, _ in model.named_parameters()]
    assert set(result.alphas) == {"0.weight", "4.weight", "9.weight", "11.weight"}
    slices = _layer_slices(model)
    for name in names:
        assert result.binarized_mask[slices[name]].all() == (name in result.alphas)
        assert result.binarized_mask[slices[name]].any() == (name in result.alphas)
    for name, alpha in result.alphas.items():
        assert 5e-4 <= alpha <= 5e-2
        assert np.array_equal(np.abs(result.delta[slices[name]]), np.full(slices[name].stop - slices[name].start,
                                                                           np.float32(alpha)))


def test_one_fedbat_round_learns_digits():
    data = load_dataset("digits", seed=0)
    model = _mlp()
    accuracy_before, _ = evaluate(model, data.x_test, data.y_test)
    _, train_loss_before = evaluate(model, data.x_train, data.y_train)
    result = fedbat_local_train(model, data.x_train, data.y_train, epochs=2, batch_size=32, lr=0.1, seed=0)
    assert result.loss < train_loss_before - 0.3
    updated = copy.deepcopy(model)
    unflatten(updated, flatten(model) + result.delta)  # what the server does with one client
    accuracy_after, _ = evaluate(updated, data.x_test, data.y_test)
    _, train_loss_after = evaluate(updated, data.x_train, data.y_train)
    assert train_loss_after < train_loss_before - 0.3
    assert accuracy_after > accuracy_before + 0.2


# ----------------------------------------------------------------------------------------------- arguments


_GOOD = {"epochs": 1, "batch_size": 16, "lr": 0.1, "seed": 0}


@pytest.mark.parametrize(
    "overrides",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"seed": -1},
        {"seed": 2**64},
        {"seed": 1.5},
        {"rho": -1.0},
        {"rho": float("inf")},
        {"phi": 1.0},
        {"phi": -0.1},
        {"phi": True},
        {"alpha_clamp": (0.0, 0.1)},
        {"alpha_clamp": (0.1, 0.01)},
        {"alpha_clamp": (0.1,)},
        {"alpha_clamp": (1e-3, float("inf"))},
        {"alpha_clamp": "ab"},
        {"momentum": 1.0},
        {"weight_decay": -1.0},
    ],
)
def test_fedbat_rejects_bad_arguments(overrides):
    x, y = _random_digits(32)
    with pytest.raises(ConfigurationError):
        fedbat_local_train(_mlp(), x, y, **{**_GOOD, **overrides})


def test_fedbat_rejects_bad_data_and_models_without_binarizable_layers():
    x, y = _random_digits(32)
    with pytest.raises(ConfigurationError):
        fedbat_local_train(_mlp(), x, y[:-1], **_GOOD)
    with pytest.raises(ConfigurationError):
        fedbat_local_train("mlp", x, y, **_GOOD)
    no_linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LayerNorm(64))
    with pytest.raises(ConfigurationError, match="Conv2d or Linear"):
        fedbat_local_train(no_linear, x, y, **_GOOD)


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten, self.first, self.second = torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.Linear(64, 64)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(self.first(self.flatten(x)))


def test_fedbat_refuses_subclassed_layers_and_tied_weights():
    """Without DP-SGD too: FedBAT trains through BatLinear/BatConv2d, which replace plain layers only."""
    x, y = _random_digits(32)
    subclass = torch.nn.Sequential(torch.nn.Flatten(), NonDynamicallyQuantizableLinear(64, 10))
    with pytest.raises(ConfigurationError, match="not subclasses"):
        fedbat_local_train(subclass, x, y, **_GOOD)
    with pytest.raises(ConfigurationError, match="tied"):
        fedbat_local_train(_Tied(), x, y, **_GOOD)
    shared = torch.nn.Linear(64, 10)  # the same layer twice is not a tie: it is replaced once
    twice = torch.nn.Sequential(torch.nn.Flatten(), shared, torch.nn.ReLU(), torch.nn.Linear(10, 64), shared)
    result = fedbat_local_train(twice, x, y, **_GOOD)
    assert set(result.alphas) == {"1.weight", "3.weight"}
