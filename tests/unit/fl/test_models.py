"""Tests of secfl.fl.models: shapes, GroupNorm-only normalisation, seeding, Opacus compatibility, validation."""

import pytest
import torch
from torch import nn

from secfl.exceptions import ConfigurationError
from secfl.fl.models import MODELS, build_model

SHAPES = [(1, 28, 28), (1, 8, 8), (60,)]
FORWARD_CASES = [(kind, shape) for kind in MODELS for shape in SHAPES if kind != "cnn" or len(shape) == 3]


@pytest.mark.parametrize(("kind", "shape"), FORWARD_CASES)
def test_forward_shape(kind, shape):
    model = build_model(kind, input_shape=shape, num_classes=10, seed=0)
    assert model(torch.randn(5, *shape)).shape == (5, 10)


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_cnn_uses_group_norm_and_no_batch_norm(shape):
    model = build_model("cnn", input_shape=shape, num_classes=10, groups=8, channels=16)
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 2 and norms[0].num_groups == 8
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_mlp_hidden_list_and_logreg_layers():
    mlp = build_model("mlp", input_shape=(60,), num_classes=3, hidden=[32, 16])
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [32, 16, 3]
    logreg = build_model("logreg", input_shape=(1, 8, 8), num_classes=10)
    assert [(m.in_features, m.out_features) for m in logreg.modules() if isinstance(m, nn.Linear)] == [(64, 10)]


def test_seed_makes_init_deterministic_without_touching_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    assert torch.equal(torch.rand(3), expected)
    b = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=5)
    c = build_model("cnn", input_shape=(1, 8, 8), num_classes=10, seed=6)
    pairs_ab = zip(a.parameters(), b.parameters(), strict=True)
    assert all(torch.equal(p, q) for p, q in pairs_ab)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_global_seed_controls_init_when_no_seed_given():
    torch.manual_seed(9)
    a = build_model("mlp", input_shape=(60,), num_classes=10)
    torch.manual_seed(9)
    b = build_model("mlp", input_shape=(60,), num_classes=10)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize(("kind", "shape"), [("cnn", (1, 28, 28)), ("mlp", (1, 28, 28)), ("logreg", (60,))])
def test_opacus_accepts_models(kind, shape):
    from opacus.validators import ModuleValidator

    model = build_model(kind, input_shape=shape, num_classes=10, seed=0)
    assert ModuleValidator.validate(model, strict=False) == []


@pytest.mark.parametrize(
    ("kind", "kwargs", "fragment"),
    [
        ("resnet", {}, "mlp, cnn, logreg"),
        ("mlp", {"depth": 3}, "depth"),
        ("logreg", {"hidden": 8}, "hidden"),
        ("cnn", {"input_shape": (60,)}, "input_shape"),
        ("cnn", {"input_shape": (1, 2, 2)}, "input_shape"),
        ("cnn", {"groups": 5}, "groups"),
        ("cnn", {"channels": 0}, "channels"),
        ("mlp", {"hidden": 0}, "hidden"),
        ("mlp", {"hidden": []}, "hidden"),
        ("mlp", {"hidden": "128"}, "hidden"),
        ("mlp", {"num_classes": 1}, "num_classes"),
        ("mlp", {"input_shape": ()}, "input_shape"),
        ("mlp", {"input_shape": (0, 28, 28)}, "input_shape"),
        ("mlp", {"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_configuration_error(kind, kwargs, fragment):
    kwargs = {"input_shape": (1, 28, 28), "num_classes": 10, **kwargs}
    with pytest.raises(ConfigurationError, match=fragment):
        build_model(kind, **kwargs)
