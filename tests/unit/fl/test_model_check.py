"""The client-side model check: honest models pass, imprint and dead models are refused, the engine's clients
refuse a crafted model when ``client.model_check`` is on, bad options raise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from secfl import engine, scenario
from secfl.audit.privacy.imprint import dead_model, imprint_model
from secfl.exceptions import ConfigurationError, InsufficientParticipantsError
from secfl.fl.data import load_dataset
from secfl.fl.model_check import ModelCheck, check_model, inspect_model, near_duplicate_share
from secfl.fl.models import build_model
from secfl.hooks import RoundContext, RoundHook
from secfl.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", seed=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "logreg"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_honest_models_at_initialisation_pass(digits, kind, seed):
    model = build_model(kind, input_shape=digits.input_shape, num_classes=digits.num_classes, seed=seed)
    idx = np.random.default_rng(seed).choice(len(digits.y_train), size=64, replace=False)
    assert check_model(model, digits.x_train[idx], digits.y_train[idx]) == []


def test_a_client_with_two_examples_does_not_refuse_an_honest_model(mnist):
    """On two examples every pair of units correlates +-1: the ReLU checks need min_examples examples."""
    model = build_model("mlp", input_shape=mnist.input_shape, num_classes=10, seed=0)
    assert check_model(model, mnist.x_train[:2], mnist.y_train[:2]) == []
    loose = ModelCheck(min_examples=2)
    assert any("have a duplicate" in r for r in check_model(model, mnist.x_train[:2], mnist.y_train[:2],
                                                            options=loose))


def test_an_honest_mnist_cnn_and_a_wide_mlp_pass(mnist):
    for model in (build_model("cnn", input_shape=mnist.input_shape, num_classes=10, seed=5),
                  build_model("mlp", input_shape=mnist.input_shape, num_classes=10, seed=5, hidden=[512, 256])):
        assert check_model(model, mnist.x_train[:128], mnist.y_train[:128]) == []


def test_the_check_does_not_change_the_model(digits):
    model = build_model("cnn", input_shape=digits.input_shape, num_classes=10, seed=0).train()
    before = copy.deepcopy(model.state_dict())
    check_model(model, digits.x_train[:32], digits.y_train[:32])
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_imprint_model_is_refused_for_its_structure(mnist):
    trap = imprint_model(mnist.input_shape, 10, bins=64, public_x=mnist.x_test)
    reasons = check_model(trap, mnist.x_train[:128], mnist.y_train[:128])
    assert any("rows of Linear 'imprint'" in r for r in reasons)  # identical measurement rows
    assert any("columns of Linear 'head'" in r for r in reasons)  # identical head columns
    assert any("ReLU #1 have a duplicate" in r for r in reasons)  # identical pre-activations


def test_the_dead_model_is_refused_for_its_zero_update(mnist):
    reasons = check_model(dead_model(mnist.input_shape, 10, bins=64), mnist.x_train[:128], mnist.y_train[:128])
    assert any("its update would be zero" in r for r in reasons)
    assert any("never active" in r for r in reasons)


def _kill_first_layer(model: nn.Module) -> None:
    """The inconsistent server's model for a non-target: every unit of the first hidden layer dead."""
    first = next(m for m in model.modules() if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(-1.0)


def test_a_model_with_a_dead_layer_is_refused_though_its_update_is_not_zero(digits):
    model = build_model("mlp", input_shape=digits.input_shape, num_classes=10, seed=0, hidden=32)
    _kill_first_layer(model)  # the output layer's bias still gets a gradient: the update is not all zero
    reasons = check_model(model, digits.x_train[:64], digits.y_train[:64])
    assert not any("its update would be zero" in r for r in reasons)
    assert any("gradient of '1.weight' is zero" in r for r in reasons)
    assert any("100% of the 32 units of ReLU #1 are never active" in r for r in reasons)


def test_rows_hidden_where_the_data_are_zero_are_caught_by_the_activation_check(mnist):
    """An adaptive server adds large noise to the imprint rows only on pixels that are blank in every public
    image: the rows are no longer near-duplicates, but the units compute the same function on real data."""
    trap = imprint_model(mnist.input_shape, 10, bins=64, public_x=mnist.x_test)
    x, y = mnist.x_train[:128], mnist.y_train[:128]
    seen = np.concatenate([mnist.x_test, x]).reshape(len(mnist.x_test) + len(x), -1)
    blank = torch.as_tensor(np.all(seen == seen.min(), axis=0))
    assert blank.sum() > 50  # MNIST's border
    with torch.no_grad():
        w = trap.imprint.weight
        w += torch.randn(w.shape, generator=torch.Generator().manual_seed(0)) * w.abs().max() * 10 * blank
    found = {(f.check, f.where): f for f in inspect_model(trap, x, y)}
    assert found[("duplicate_rows", "rows of Linear 'imprint'")].value < 0.25  # the row check is evaded
    assert found[("duplicate_units", "ReLU #1")].refused  # the functional check is not


def test_near_duplicate_share_finds_a_planted_cluster_and_never_overcounts():
    rng = np.random.default_rng(0)
    for n, d, planted in [(1000, 784, 300), (200, 16, 60), (50, 9, 0)]:
        rows = rng.standard_normal((n, d))
        base = rng.standard_normal(d)
        rows[:planted] = base + 0.01 * np.linalg.norm(base) / np.sqrt(d) * rng.standard_normal((planted, d))
        rows = rows[rng.permutation(n)]
        unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        gram = unit @ unit.T
        np.fill_diagonal(gram, -1)
        exact = float(np.mean(gram.max(axis=1) > 0.99))
        sketch = near_duplicate_share(rows, 0.99, rng=np.random.default_rng(1))
        assert sketch <= exact + 1e-12
        assert sketch == pytest.approx(exact, abs=0.02)
    assert near_duplicate_share(np.zeros((10, 4)), 0.9) == 0.0  # zero rows have no direction, no duplicate


@pytest.mark.parametrize("bad", [
    {"duplicate_cosine": 1.0}, {"duplicate_cosine": 0}, {"activation_correlation": -0.5},
    {"max_duplicate_share": 0}, {"max_dead_share": 1.5}, {"max_zero_grad_share": float("nan")},
    {"zero_tol": -1e-9}, {"min_rows": 1}, {"max_examples": 0}, {"projections": 0}, {"window": 2.5},
    {"seed": -1}, {"max_correlated_share": True},
])
def test_bad_options_raise(bad):
    with pytest.raises(ConfigurationError):
        ModelCheck(**bad)


def test_bad_arguments_raise(digits):
    model = build_model("logreg", input_shape=digits.input_shape, num_classes=10, seed=0)
    with pytest.raises(ConfigurationError, match="ModelCheck"):
        check_model(model, digits.x_train[:4], digits.y_train[:4], options={"duplicate_cosine": 0.9})
    with pytest.raises(ConfigurationError, match="non-empty"):
        check_model(model, digits.x_train[:0], digits.y_train[:0])
    with pytest.raises(ConfigurationError, match="one label per example"):
        check_model(model, digits.x_train[:4], digits.y_train[:3])


def test_a_model_that_does_not_fit_the_clients_data_is_refused_not_a_crash(digits, mnist):
    wrong_input = build_model("logreg", input_shape=mnist.input_shape, num_classes=10, seed=0)
    assert check_model(wrong_input, digits.x_train[:32], digits.y_train[:32]) == [
        "the model does not run on the client's data (RuntimeError)"]
    two_classes = build_model("logreg", input_shape=digits.input_shape, num_classes=2, seed=0)
    assert any("does not run" in r for r in check_model(two_classes, digits.x_train[:32], digits.y_train[:32]))


SMALL = {
    "name": "check",
    "run": {"rounds": 2, "seed": 3, "clients_per_round": 4},
    "data": {"dataset": "digits", "num_clients": 6},
    "model": {"kind": "mlp", "options": {"hidden": 32}},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}


class InconsistentServer(RoundHook):
    """A malicious server that sends ``victims`` a model whose first layer is dead and the others the honest
    model (in the embedded engine: swapped into the shared model right before each client checks and trains)."""

    def __init__(self, victims: set[int]) -> None:
        self.victims, self.honest, self.sent = victims, None, []

    def before_round(self, ctx: RoundContext) -> None:
        self.honest = copy.deepcopy(ctx.model.state_dict())

    def client_data(self, ctx, cid, x, y):
        ctx.model.load_state_dict(self.honest)
        if cid in self.victims:
            _kill_first_layer(ctx.model)
            self.sent.append((ctx.round, cid))
        return x, y

    def round_updates(self, ctx, updates):
        ctx.model.load_state_dict(self.honest)
        return updates


def _run(tmp_path, name, check, hooks=()):
    spec = scenario.Scenario.model_validate({**SMALL, "client": {**SMALL["client"], "model_check": check}})
    engine.run(spec, RunDir(tmp_path / name), hooks=hooks)
    return RunDir(tmp_path / name).metrics()


def test_clients_refuse_a_crafted_model_in_the_engine(tmp_path):
    server = InconsistentServer({0, 1, 2})
    rows = _run(tmp_path, "on", True, [server])
    refused = [sum(1 for r, _ in server.sent if r == row["round"]) for row in rows]
    assert sum(refused) > 0 and [row["model_refusals"] for row in rows] == refused
    assert [row["clients"] for row in rows] == [4, 4]  # sampled; the refusing ones sent nothing
    plain = InconsistentServer({0, 1, 2})
    off = _run(tmp_path, "off", False, [plain])
    assert plain.sent == server.sent and all("model_refusals" not in row for row in off)
    assert [row["loss"] for row in off] != [row["loss"] for row in rows]  # the victims' updates were summed


def test_the_check_does_not_change_an_honest_run(tmp_path):
    strip = [{k: v for k, v in row.items() if k not in ("seconds", "model_refusals")} for row in
             _run(tmp_path, "checked", True)]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in _run(tmp_path, "plain", False)]
    assert [row["model_refusals"] for row in RunDir(tmp_path / "checked").metrics()] == [0, 0]


def test_a_round_every_client_refuses_is_aborted_not_summed(tmp_path):
    with pytest.raises(InsufficientParticipantsError, match="refused the model"):
        _run(tmp_path, "all", True, [InconsistentServer(set(range(6)))])


def test_model_check_needs_the_embedded_engine(tmp_path):
    spec = scenario.Scenario.model_validate({**SMALL, "client": {**SMALL["client"], "model_check": True}})
    with pytest.raises(ConfigurationError, match="model_check"):
        engine.run(spec, RunDir(tmp_path / "t"), transport=engine.embedded)
    assert scenario.Scenario.model_validate(SMALL).client.model_check is False
