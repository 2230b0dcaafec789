"""Tests of FedBAT under DP-SGD (secfl.methods.fedbat: layers, and the trainer wrapped by secfl.training.DpSgd):
per-sample gradients through the binarizer, the FedBAT upload contract, accounting across calls, learning under
noise, and validation."""

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from torch.func import functional_call
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear
from torch.nn import functional

from secfl.exceptions import ConfigurationError
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params, unflatten
from secfl.methods.fedbat import (BatConv2d, BatLinear, FedBatResult, FedBatTrainer, bat_model, binarize,
                                  binarized_segments, fedbat_local_train)
from secfl.methods.fedbat.binarize import Binarize
from secfl.training import DpSgd, DpSgdConfig, Hyper, SgdTrainer, Task, evaluate

CONFIG = DpSgdConfig(noise_multiplier=1.0, max_grad_norm=1.0, grad_sample_mode="functorch")
TRAIN = {"epochs": 2, "batch_size": 16, "lr": 0.1, "seed": 3}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: intra-op threads only add spin-wait overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_digits(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)


def _mlp(hidden: int = 16, seed: int = 0) -> torch.nn.Module:
    return build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=hidden, seed=seed)


def _cnn() -> torch.nn.Module:
    return build_model("cnn", input_shape=(1, 8, 8), num_classes=10, channels=4, groups=2, hidden=8, seed=0)


def _slices(model: torch.nn.Module) -> dict[str, slice]:
    slices, offset = {}, 0
    for name, p in model.named_parameters():
        slices[name] = slice(offset, offset + p.numel())
        offset += p.numel()
    return slices


# ------------------------------------------------------------------------------------- per-sample gradients


def test_binarize_function_with_a_layer_shaped_alpha_matches_binarize():
    """The BAT layers apply ``Binarize`` with alpha of shape [1]; ``binarize`` (0-d alpha, uniforms drawn from its
    generator) must give the same output and gradients, and the alpha gradient keeps alpha's shape."""
    gen = torch.Generator().manual_seed(0)
    m = (torch.rand(200, generator=gen, dtype=torch.float64) * 4 - 2) * 0.1  # |m / alpha| up to 2
    g = torch.randn(200, generator=gen, dtype=torch.float64)
    u = torch.rand(200, generator=torch.Generator().manual_seed(9), dtype=torch.float64)  # what binarize draws
    outputs, grads = [], []
    for alpha in [torch.tensor([0.1], dtype=torch.float64), torch.tensor(0.1, dtype=torch.float64)]:
        mm, aa = m.clone().requires_grad_(), alpha.clone().requires_grad_()
        if alpha.dim():
            out = Binarize.apply(mm, aa, u)
        else:
            out = binarize(mm, aa, generator=torch.Generator().manual_seed(9))
        outputs.append(out.detach())
        grad_m, grad_a = torch.autograd.grad((out * g).sum(), (mm, aa))
        assert grad_a.shape == alpha.shape
        grads.append([grad_m, grad_a.reshape(-1)])
    assert torch.equal(outputs[0], outputs[1])
    assert torch.allclose(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1])


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("force_functorch", [True, False], ids=["functorch", "hooks"])
@pytest.mark.parametrize("binarized", [True, False], ids=["binarized", "warm-up"])
def test_opacus_per_sample_gradients_equal_per_example_gradients_at_the_shared_binarized_weight(
        force_functorch, binarized):
    """Opacus's grad_sample of m, a and bias equal each example's own gradient, computed independently with
    fedbat's binarizer on the ORIGINAL model at the same uniforms u (one draw shared by the whole batch)."""
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    torch.nn.init.normal_(model[0].weight, generator=torch.Generator().manual_seed(0))
    trained, layers = bat_model(model, rho=2.0, alpha_clamp=(1e-3, 1.0))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in layers.values():
            layer.m.copy_(torch.randn(layer.m.shape, generator=gen) * 0.2)  # some |m| > alpha: STE mask active
            if binarized:
                layer.start_binarizing()
                layer.a.fill_(0.05)
                layer.draw(gen)
    x, y = torch.randn(7, 6, generator=gen), torch.randint(0, 3, (7,), generator=gen)

    private = GradSampleModule(trained, loss_reduction="sum", force_functorch=force_functorch)
    functional.cross_entropy(private(x), y, reduction="sum").backward()
    samples = {name: p.grad_sample for name, p in trained.named_parameters()}
    assert samples["0.m"].shape == (7, 5, 6) and samples["0.a"].shape == (7, 1)

    for i in range(7):  # reference: plain autograd, one example, Binarize on the original model
        leaves = {name: p.detach().clone().requires_grad_() for name, p in trained.named_parameters()}
        weights = {}
        for prefix, layer in [("0", layers["0.weight"]), ("2", layers["2.weight"])]:
            shared, m, a = layer.shared, leaves[f"{prefix}.m"], leaves[f"{prefix}.a"]
            if binarized:
                alpha = torch.clamp(shared.alpha0 * torch.exp(shared.rho * a), shared.low, shared.high).reshape(())
                weights[f"{prefix}.weight"] = shared.weight + Binarize.apply(m, alpha, shared.u)
            else:
                weights[f"{prefix}.weight"] = shared.weight + m + 0 * a
            weights[f"{prefix}.bias"] = leaves[f"{prefix}.bias"]
        loss = functional.cross_entropy(functional_call(model, weights, (x[i : i + 1],)), y[i : i + 1])
        reference = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))
        for name, grad in reference.items():
            torch.testing.assert_close(samples[name][i], grad, rtol=1e-5, atol=1e-6)
    if binarized:
        assert samples["0.a"].abs().sum() > 0 and (samples["0.m"] == 0).any()  # STE zeros where |m| > alpha
    else:
        assert torch.equal(samples["0.a"], torch.zeros_like(samples["0.a"]))


def test_bat_model_replaces_layers_and_keeps_the_original_names():
    model = _cnn()
    trained, layers = bat_model(model)
    assert set(layers) == {"0.weight", "4.weight", "9.weight", "11.weight"}
    assert isinstance(layers["0.weight"], BatConv2d) and isinstance(layers["11.weight"], BatLinear)
    assert all(type(m) not in (torch.nn.Linear, torch.nn.Conv2d) for m in trained.modules())
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(trained(x), model(x))  # m = 0 in warm-up: same function
    assert not any(isinstance(m, (BatLinear, BatConv2d)) for m in model.modules())  # original untouched
    root, root_layers = bat_model(torch.nn.Linear(4, 2))
    assert isinstance(root, BatLinear) and set(root_layers) == {"weight"}


# --------------------------------------------------------------------------------------------- contract


@pytest.fixture(scope="module")
def trained():
    model = _cnn()
    before = copy.deepcopy(model.state_dict())
    x, y = _random_digits()
    return model, before, fedbat_local_train(model, x, y, config=CONFIG, **TRAIN), (x, y)


def test_result_has_the_fedbat_contract(trained):
    model, before, result, (x, y) = trained
    assert isinstance(result, FedBatResult)
    assert result.delta.dtype == np.float32 and result.delta.shape == (num_params(model),)
    assert result.num_examples == 96 and math.isfinite(result.loss) and math.isfinite(result.state["epsilon"])
    assert set(result.state) == {"dp_sgd", "epsilon"}
    plain = fedbat_local_train(model, x, y, **TRAIN)
    assert set(result.bits) == set(result.alphas) == set(plain.alphas) == set(result.warmup_mean_abs)
    slices = _slices(model)
    mask = np.zeros(num_params(model), dtype=bool)
    for start, stop in binarized_segments(model):
        mask[start:stop] = True
    assert np.array_equal(result.binarized_mask, mask) and np.array_equal(result.binarized_mask, plain.binarized_mask)
    for name, alpha in result.alphas.items():
        bits, chunk = result.bits[name], result.delta[slices[name]]
        assert bits.dtype == np.uint8 and bits.shape == (slices[name].stop - slices[name].start,)
        assert set(np.unique(bits).tolist()) == {0, 1}
        assert np.array_equal(chunk, np.float32(alpha) * (2 * bits.astype(np.float32) - 1))
        assert 5e-4 <= alpha <= 5e-2
    assert np.all(result.delta[~mask] != 0)  # biases and GroupNorm affine train in full precision
    assert np.array_equal(result.raw[~mask], result.delta[~mask]) and np.any(result.raw[mask] != 0)
    assert result.uplink_bits == plain.uplink_bits
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters()) and model.training
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.loss = 0.0


def test_result_is_deterministic_given_the_seed(trained):
    model, _, result, (x, y) = trained
    again = fedbat_local_train(model, x, y, config=CONFIG, **TRAIN)
    assert np.array_equal(again.delta, result.delta) and again.loss == result.loss and again.alphas == result.alphas
    assert all(np.array_equal(again.bits[k], result.bits[k]) for k in result.bits)
    assert again.state["epsilon"] == result.state["epsilon"] and again.state["dp_sgd"] == result.state["dp_sgd"]
    other = fedbat_local_train(model, x, y, config=CONFIG, **{**TRAIN, "seed": 4})
    assert not np.array_equal(other.delta, result.delta)
    hooks = dataclasses.replace(CONFIG, grad_sample_mode="hooks")  # also per-sample grads via torch.func
    assert fedbat_local_train(model, x, y, config=hooks, **TRAIN).alphas == pytest.approx(result.alphas)


def test_it_is_the_fedbat_trainer_wrapped_by_dp_sgd(trained):
    model, _, result, (x, y) = trained
    hyper = Hyper(epochs=TRAIN["epochs"], batch_size=TRAIN["batch_size"], lr=TRAIN["lr"])
    local = FedBatTrainer().train(Task(model, x, y, TRAIN["seed"], hyper), DpSgd(CONFIG))
    assert np.array_equal(local.delta, result.delta) and local.loss == result.loss
    assert local.detail.alphas == result.alphas and dict(local.state) == dict(result.state)
    assert dict(local.metrics) == {"fedbat_uplink_bits": result.uplink_bits}


def test_empty_poisson_batches_and_binarizing_from_the_start():
    x, y = _random_digits(4)
    result = fedbat_local_train(_mlp(4), x, y, config=CONFIG, epochs=4, batch_size=1, lr=0.1, seed=1, phi=0.0)
    assert result.state["dp_sgd"]["history"] == [(1.0, 0.25, 16)]  # 16 steps, several with no example
    assert result.warmup_mean_abs == {"1.weight": 5e-4, "3.weight": 5e-4}  # mean|m| = 0 at step 0: lower clamp
    assert all(5e-4 * (1 - 1e-6) <= a <= 5e-2 for a in result.alphas.values()) and math.isfinite(result.state["epsilon"])
    warm = fedbat_local_train(_mlp(4), x, y, config=CONFIG, epochs=4, batch_size=1, lr=0.1, seed=1, phi=0.5)
    assert np.all(np.isfinite(warm.delta)) and all(v > 0 for v in warm.warmup_mean_abs.values())


# ------------------------------------------------------------------------------------------- accounting


def test_epsilon_grows_across_calls_and_matches_the_sgd_trainer_under_dp_sgd():
    model = _mlp()
    x, y = _random_digits(64)
    first = fedbat_local_train(model, x, y, config=CONFIG, **TRAIN)
    state = copy.deepcopy(first.state["dp_sgd"])
    second = fedbat_local_train(model, x, y, config=CONFIG, accountant_state=first.state["dp_sgd"], **TRAIN)
    assert first.state["dp_sgd"] == state  # not mutated
    assert first.state["dp_sgd"]["history"] == [(1.0, 0.25, 8)]  # 64 examples, batch 16: q = 1/4, 2 epochs
    assert sum(t for _, _, t in second.state["dp_sgd"]["history"]) == 16
    assert 0 < first.state["epsilon"] < second.state["epsilon"] < math.inf
    hyper = Hyper(epochs=TRAIN["epochs"], batch_size=TRAIN["batch_size"], lr=TRAIN["lr"])
    plain = SgdTrainer().train(Task(model, x, y, TRAIN["seed"], hyper), DpSgd(CONFIG))
    assert plain.state["epsilon"] == first.state["epsilon"] and plain.state["dp_sgd"] == first.state["dp_sgd"]
    assert not np.array_equal(second.delta, first.delta)  # prior steps change the noise even with the same seed


def test_zero_noise_gives_infinite_epsilon():
    x, y = _random_digits(32)
    config = DpSgdConfig(noise_multiplier=0.0, max_grad_norm=1.0, grad_sample_mode="functorch")
    assert fedbat_local_train(_mlp(), x, y, config=config, **TRAIN).state["epsilon"] == math.inf


# --------------------------------------------------------------------------------------------- learning


def test_fedbat_under_dp_sgd_learns_digits():
    data = load_dataset("digits", seed=0)
    model = _mlp(hidden=64)
    before, _ = evaluate(model, data.x_test, data.y_test)
    result = fedbat_local_train(model, data.x_train, data.y_train, config=CONFIG, epochs=3, batch_size=64, lr=0.5,
                                seed=0)
    updated = copy.deepcopy(model)
    unflatten(updated, flatten(model) + result.delta)  # what the server does with one client
    after, _ = evaluate(updated, data.x_test, data.y_test)
    assert before < 0.2 and after > 0.5
    assert math.isfinite(result.state["epsilon"]) and result.state["epsilon"] < 10


# ------------------------------------------------------------------------------------------- validation


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.second = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(self.first(x))


@pytest.mark.parametrize(
    "overrides",
    [
        {"config": DpSgdConfig(1.0, 1.0, grad_sample_mode="ghost")},
        {"config": {"noise_multiplier": 1.0}},
        {"accountant_state": {"history": [("a", 1, 1)], "mechanism": "rdp"}},
        {"accountant_state": {"mechanism": "rdp"}},
        {"phi": 1.0},
        {"phi": -0.5},
        {"seed": -1},
        {"seed": 2**64},
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": 0.0},
        {"rho": -1.0},
        {"alpha_clamp": (0.1, 0.01)},
        {"alpha_clamp": (0.0, 0.1)},
        {"momentum": 1.0},
        {"weight_decay": -1.0},
        {"model": "mlp"},
        {"model": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())},
        {"model": torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2), torch.nn.Flatten())},
        {"model": torch.nn.Sequential(torch.nn.Flatten(), NonDynamicallyQuantizableLinear(64, 10))},
        {"model": _Tied()},
        {"x": np.zeros((0, 1, 8, 8), dtype=np.float32)},
    ],
)
def test_bad_arguments_raise_configuration_errors(overrides):
    x, y = _random_digits(16)
    args = {"model": _mlp(), "x": x, "y": y, "config": CONFIG, **TRAIN, **overrides}
    with pytest.raises(ConfigurationError):
        fedbat_local_train(args.pop("model"), args.pop("x"), args.pop("y"), **args)
