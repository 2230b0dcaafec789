"""Tests of secfl.methods.autoflip.structure (unit groups, compaction) and .flops (multiply-accumulate counts)."""

import copy
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import flatten, num_params, unflatten
from secfl.methods.autoflip.flops import flops_per_step, forward_macs
from secfl.methods.autoflip.structure import compact, prunable_units, unit_scores

CASES = {
    "mlp-32": ("mlp", (1, 8, 8), {"hidden": 32}),
    "mlp-32-16": ("mlp", (1, 8, 8), {"hidden": [32, 16]}),
    "cnn": ("cnn", (1, 12, 12), {"channels": 8, "groups": 4, "hidden": 16}),
    "logreg": ("logreg", (1, 8, 8), {}),
}


@functools.cache
def _model(case: str) -> nn.Module:
    kind, shape, params = CASES[case]
    return build_model(kind, input_shape=shape, num_classes=10, seed=0, **params).eval()


def _inputs(case: str, n: int = 6) -> torch.Tensor:
    return torch.randn((n, *CASES[case][1]), generator=torch.Generator().manual_seed(7))


@st.composite
def _masks(draw, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """One bool mask per group, each keeping at least one unit."""
    out = []
    for n in sizes:
        bits = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if not any(bits):
            bits[draw(st.integers(0, n - 1))] = True
        out.append(np.array(bits, dtype=bool))
    return out


@pytest.mark.parametrize("case", list(CASES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_the_compact_model_computes_the_full_model_with_removed_units_zeroed(case, data):
    model = _model(case)
    groups = prunable_units(model)
    keep = data.draw(_masks(tuple(g.size for g in groups)))
    before = flatten(model)
    small = compact(model, keep)
    full = flatten(model)
    assert np.array_equal(full, before)  # the full model is left untouched
    d = num_params(model)

    # index: int64, strictly increasing (so unique), in range; the weights are the full model's
    assert small.index.dtype == np.int64
    assert np.all(np.diff(small.index) > 0)
    assert small.index.size == 0 or (small.index[0] >= 0 and small.index[-1] < d)
    assert np.array_equal(flatten(small.model), small.from_full(full))

    # the coordinates removed are exactly those of the removed units
    removed = np.setdiff1d(np.arange(d), small.index)
    owned = [g.coords[~k].ravel() for g, k in zip(groups, small.keep_units)]
    assert np.array_equal(removed, np.unique(np.concatenate([np.zeros(0, np.int64), *owned])))

    # GroupNorm rounding: masks without a norm are applied as given; with one, whole norm groups by majority
    for g, asked, applied in zip(groups, keep, small.keep_units):
        assert applied.any()
        if g.norm is None:
            assert np.array_equal(applied, asked)
        else:
            per = g.size // g.norm_groups
            alive = applied.reshape(g.norm_groups, per)
            assert np.all(alive.all(axis=1) | ~alive.any(axis=1))
            majority = 2 * asked.reshape(g.norm_groups, per).sum(axis=1) >= per
            assert np.array_equal(alive[:, 0], majority) or not majority.any()

    # the key property: same logits as the full model with the removed units' coordinates zeroed
    zeroed = copy.deepcopy(model)
    unflatten(zeroed, small.to_full(small.from_full(full)))
    x = _inputs(case)
    with torch.no_grad():
        np.testing.assert_allclose(small.model(x).numpy(), zeroed(x).numpy(), rtol=1e-5, atol=1e-5)

    v = np.random.default_rng(0).standard_normal(small.index.size).astype(np.float32)
    assert np.array_equal(small.from_full(small.to_full(v)), v)
    assert np.count_nonzero(small.to_full(v)[removed]) == 0


def test_unit_groups_of_the_built_models():
    assert [(g.layer, g.consumer, g.size, g.block) for g in prunable_units(_model("mlp-32-16"))] == [
        (1, 3, 32, 1), (3, 5, 16, 1)]
    cnn = prunable_units(_model("cnn"))
    assert [(g.layer, g.consumer, g.norm, g.norm_groups, g.size, g.block) for g in cnn] == [
        (0, 4, 1, 4, 8, 1), (4, 9, 5, 4, 16, 9), (9, 11, None, 1, 16, 1)]
    # per unit: filter + bias + norm weight/bias + next layer's slice (conv: 8 filters x 9; linear: 16 rows x 9)
    assert [g.coords.shape for g in cnn] == [(8, 9 + 1 + 2 + 16 * 9), (16, 72 + 1 + 2 + 16 * 9), (16, 144 + 1 + 10)]
    assert prunable_units(_model("logreg")) == []


def test_unit_coordinates_and_scores_of_a_tiny_mlp_by_hand():
    # W1 [2, 3] at 0..5, b1 at 6..7, W2 [2, 2] at 8..11, b2 at 12..13
    model = build_model("mlp", input_shape=(3,), num_classes=2, hidden=2, seed=0)
    (group,) = prunable_units(model)
    assert group.coords.tolist() == [[0, 1, 2, 6, 8, 10], [3, 4, 5, 7, 9, 11]]
    assert group.incoming.tolist() == [[0, 1, 2], [3, 4, 5]]
    (scores,) = unit_scores(model, np.arange(14, dtype=np.float64))
    assert scores.tolist() == [1.0, 4.0]
    small = compact(model, [np.array([False, True])])
    assert small.index.tolist() == [3, 4, 5, 7, 9, 11, 12, 13]
    assert small.to_full(np.arange(1.0, 9.0)).tolist() == [0, 0, 0, 1, 2, 3, 0, 4, 0, 5, 0, 6, 7, 8]


def test_group_norm_keeps_or_removes_whole_groups():
    model = _model("cnn")
    keep = [np.zeros(8, bool), np.zeros(16, bool), np.ones(16, bool)]
    keep[0][0] = True  # 1 of the 2 channels of norm group 0: half, so the group stays
    keep[1][[0, 5, 6, 10]] = True  # per norm group of 4: 1, 2, 1, 0 kept: only group 1 reaches half
    small = compact(model, keep)
    assert np.flatnonzero(small.keep_units[0]).tolist() == [0, 1]
    assert np.flatnonzero(small.keep_units[1]).tolist() == [4, 5, 6, 7]
    norms = [m for m in small.model if isinstance(m, nn.GroupNorm)]
    assert [(m.num_groups, m.num_channels) for m in norms] == [(1, 2), (1, 4)]
    keep[1][:] = False
    keep[1][9] = True  # no group reaches half: the one with the most kept channels (group 2) stays
    assert np.flatnonzero(compact(model, keep).keep_units[1]).tolist() == [8, 9, 10, 11]
    again = compact(model, list(small.keep_units))  # applied masks are a fixed point
    assert all(np.array_equal(a, b) for a, b in zip(again.keep_units, small.keep_units))


def test_the_compact_model_is_a_new_model_in_the_same_mode_and_dtype():
    model = build_model("mlp", input_shape=(6,), num_classes=3, hidden=[5, 4], seed=1).double().train()
    before = flatten(model)
    small = compact(model, [np.array([1, 0, 1, 0, 1], bool), np.array([0, 1, 1, 0], bool)])
    assert small.model.training and all(p.dtype == torch.float64 for p in small.model.parameters())
    with torch.no_grad():
        for p in small.model.parameters():
            p.add_(1.0)
    assert np.array_equal(flatten(model), before)
    assert [m.weight.shape for m in small.model if isinstance(m, nn.Linear)] == [(3, 6), (2, 3), (3, 2)]


def test_flops_of_a_tiny_mlp_and_a_tiny_cnn_by_hand():
    mlp = build_model("mlp", input_shape=(4,), num_classes=2, hidden=3, seed=0)
    assert forward_macs(mlp, (4,)) == 4 * 3 + 3 * 2
    assert flops_per_step(mlp, (4,), 5) == 3 * 5 * 18
    # conv 1->2 on 4x4 (padding 1), pool -> 2x2, conv 2->4, pool -> 1x1, linear 4->3, linear 3->2
    cnn = build_model("cnn", input_shape=(1, 4, 4), num_classes=2, channels=2, groups=1, hidden=3, seed=0)
    macs = 2 * 1 * 9 * 16 + 4 * 2 * 9 * 4 + 4 * 3 + 3 * 2
    assert forward_macs(cnn, (1, 4, 4)) == macs == 594
    assert flops_per_step(cnn, (1, 4, 4), 2) == 3 * 2 * 594


def test_halving_the_hidden_units_of_an_mlp_halves_its_flops():
    model = build_model("mlp", input_shape=(1, 28, 28), num_classes=10, hidden=128, seed=0)
    assert flops_per_step(model, (1, 28, 28), 32) == 3 * 32 * (784 * 128 + 128 * 10) == 9_756_672
    keep = np.zeros(128, bool)
    keep[::2] = True
    small = compact(model, [keep])
    assert flops_per_step(small.model, (1, 28, 28), 32) == 3 * 32 * (784 * 64 + 64 * 10) == 9_756_672 // 2


def test_a_compacted_cnn_counts_fewer_flops():
    model = _model("cnn")
    full = flops_per_step(model, (1, 12, 12), 4)
    keep = [np.repeat([True, False, True, False], 2), np.repeat([True, True, False, True], 4), np.ones(16, bool)]
    small = compact(model, keep).model
    # conv 1->4 at 12x12, conv 4->12 at 6x6, linear 12*9->16, linear 16->10
    assert flops_per_step(small, (1, 12, 12), 4) == 3 * 4 * (4 * 9 * 144 + 12 * 4 * 9 * 36 + 108 * 16 + 160) < full


def test_unsupported_models_are_refused_clearly():
    batch_norm = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConfigurationError, match="BatchNorm"):
        prunable_units(batch_norm)
    with pytest.raises(ConfigurationError, match="no FLOPs rule"):
        flops_per_step(batch_norm, (1, 4, 4), 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ConfigurationError, match="Sequential"):
        prunable_units(Net())
    with pytest.raises(ConfigurationError, match="Sequential"):
        flops_per_step(Net(), (4,), 1)
    with pytest.raises(ConfigurationError, match="groups=2"):
        prunable_units(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)))
    with pytest.raises(ConfigurationError, match="without Flatten"):
        prunable_units(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(2, 2)))
    with pytest.raises(ConfigurationError, match="LayerNorm"):
        compact(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2)), [np.ones(3, bool)])


def test_bad_masks_vectors_and_shapes_are_refused_clearly():
    model = _model("mlp-32-16")
    with pytest.raises(ConfigurationError, match="keep has 1 mask"):
        compact(model, [np.ones(32, bool)])
    with pytest.raises(ConfigurationError, match=r"keep\[1\].*shape \(16,\)"):
        compact(model, [np.ones(32, bool), np.ones(15, bool)])
    with pytest.raises(ConfigurationError, match="bool"):
        compact(model, [np.ones(32), np.ones(16)])
    with pytest.raises(ConfigurationError, match="keeps no unit"):
        compact(model, [np.ones(32, bool), np.zeros(16, bool)])
    with pytest.raises(ConfigurationError, match="scores"):
        unit_scores(model, np.zeros(3))
    small = compact(model, [np.ones(32, bool), np.ones(16, bool)])
    with pytest.raises(ConfigurationError, match="compact vector"):
        small.to_full(np.zeros(small.index.size + 1))
    with pytest.raises(ConfigurationError, match="full vector"):
        small.from_full(np.zeros(3))
    with pytest.raises(ConfigurationError, match="batch_size"):
        flops_per_step(model, (1, 8, 8), 0)
    with pytest.raises(ConfigurationError, match="does not fit"):
        flops_per_step(model, (1, 5, 5), 1)
    with pytest.raises(ConfigurationError, match="input_shape"):
        flops_per_step(model, (), 1)
