"""Membership inference (loss threshold, offline LiRA), ROC metrics and DP bounds on sklearn digits (8x8).

Measured values (torch CPU, 1 thread, this file's seeds) are quoted next to each threshold; thresholds keep margin.
"""

import math

import numpy as np
import pytest
import torch

from secfl.audit.privacy.membership import (
    dp_auc_bound, dp_tpr_bound, lira_offline_scores, logit_confidence, loss_threshold_scores, out_mask,
    per_example_loss, roc_metrics, train_shadow_models,
)
from secfl.exceptions import ConfigurationError
from secfl.training import evaluate, local_train
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import flatten, unflatten

SHAPE = (1, 8, 8)
N = 100


def _build(seed):
    return build_model("mlp", input_shape=SHAPE, num_classes=10, seed=seed, hidden=64)


@pytest.fixture(scope="module")
def setup(one_torch_thread):
    """An MLP overfit on 100 train examples (members); 100 test examples are the non-members."""
    ds = load_dataset("digits", seed=0, test_fraction=0.2)
    target = _build(0)
    result = local_train(target, ds.x_train[:N], ds.y_train[:N], epochs=60, batch_size=20, lr=0.1, seed=0)
    unflatten(target, flatten(target) + result.delta)
    x = np.concatenate([ds.x_train[:N], ds.x_test[:N]])
    y = np.concatenate([ds.y_train[:N], ds.y_test[:N]])
    is_member = np.r_[np.ones(N, bool), np.zeros(N, bool)]
    return ds, target, x, y, is_member


def test_per_example_loss_matches_evaluate_and_keeps_mode(setup):
    ds, target, x, y, _ = setup
    target.train()
    losses = per_example_loss(target, x, y)
    assert target.training
    assert losses.shape == (2 * N,) and np.all(losses >= 0)
    assert losses.mean() == pytest.approx(evaluate(target, x, y)[1], rel=1e-5)
    np.testing.assert_array_equal(loss_threshold_scores(target, x, y), -losses)


def test_logit_confidence_is_log_odds_of_true_class(setup):
    _, target, x, y, _ = setup
    with torch.no_grad():
        p = torch.softmax(target(torch.tensor(x[:10])).double(), dim=1)[torch.arange(10), torch.tensor(y[:10])]
    np.testing.assert_allclose(logit_confidence(target, x[:10], y[:10]), torch.log(p / (1 - p)).numpy(), rtol=1e-6)


def test_loss_threshold_separates_members_of_overfit_model(setup):
    _, target, x, y, is_member = setup
    result = roc_metrics(loss_threshold_scores(target, x, y), is_member)
    assert result["auc"] > 0.6  # measured 0.683
    assert math.isnan(result["tpr_at_01pct_fpr"])  # 100 non-members cannot resolve 0.1% FPR
    assert 0.0 <= result["tpr_at_1pct_fpr"] <= 1.0  # measured 0.05


def test_lira_offline_with_six_shadows(setup):
    ds, target, x, y, is_member = setup
    pool_x, pool_y = ds.x_train[N:], ds.y_train[N:]  # attacker's pool: same distribution, disjoint from x
    models, index_sets = train_shadow_models(_build, pool_x, pool_y, 6, N, epochs=60, lr=0.1, seed=1)
    assert len(models) == len(index_sets) == 6
    assert all(len(s) == N and len(set(s)) == N for s in index_sets)
    scores = lira_offline_scores(target, models, x, y)
    assert scores.shape == (2 * N,) and np.all(np.isfinite(scores))
    assert roc_metrics(scores, is_member)["auc"] > 0.65  # measured 0.788 (loss attack on the same data: 0.683)
    # Shadows drawn from a pool that contains the candidates: only OUT models count, selected by the mask.
    mask = out_mask(index_sets, np.arange(10))
    assert mask.shape == (6, 10)
    assert not mask[0, np.isin(np.arange(10), index_sets[0])].any()
    assert np.all(np.isfinite(lira_offline_scores(target, models, pool_x[:10], pool_y[:10], mask=mask | ~mask.any(0))))


def test_lira_variance_modes_and_errors(setup):
    _, target, x, y, _ = setup
    shadows = [_build(s) for s in (5, 6, 7)]
    per_example = lira_offline_scores(target, shadows, x[:5], y[:5], global_variance=False)
    pooled = lira_offline_scores(target, shadows, x[:5], y[:5])
    assert per_example.shape == pooled.shape == (5,)
    with pytest.raises(ConfigurationError):
        lira_offline_scores(target, [], x[:5], y[:5])
    with pytest.raises(ConfigurationError):
        lira_offline_scores(target, shadows, x[:5], y[:5], mask=np.ones((2, 5), bool))
    with pytest.raises(ConfigurationError):  # example 0 has no OUT model
        lira_offline_scores(target, shadows, x[:5], y[:5], mask=np.array([[False] + [True] * 4] * 3))
    with pytest.raises(ConfigurationError):  # identical shadows: zero variance
        lira_offline_scores(target, [target, target], x[:5], y[:5])
    with pytest.raises(ConfigurationError):
        per_example_loss(target, x[:5], y[:4])
    with pytest.raises(ConfigurationError):
        train_shadow_models(_build, x, y, 2, len(y) + 1, epochs=1, lr=0.1, seed=0)


def test_roc_metrics_on_hand_made_scores():
    members = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
    perfect = roc_metrics(np.r_[np.full(1000, 2.0), np.full(1000, 1.0)], members)
    assert perfect["auc"] == 1.0 and perfect["tpr_at_1pct_fpr"] == 1.0 and perfect["tpr_at_01pct_fpr"] == 1.0
    rng = np.random.default_rng(0)
    random = roc_metrics(rng.normal(size=2000), members)
    assert abs(random["auc"] - 0.5) < 0.05
    assert random["tpr_at_1pct_fpr"] < 0.05
    # Step, not interpolation: scores 4,3 members, 2 non-member, 1 member, 0 non-member -> FPR 1/2 needs threshold 2.
    small = roc_metrics(np.array([4.0, 3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 1, 0]))
    assert small["auc"] == pytest.approx(5 / 6)
    assert math.isnan(small["tpr_at_1pct_fpr"])  # 2 non-members cannot resolve 1% FPR


def test_roc_metrics_errors():
    with pytest.raises(ConfigurationError):
        roc_metrics(np.zeros(3), np.array([True, False]))
    with pytest.raises(ConfigurationError):
        roc_metrics(np.array([0.0, np.nan]), np.array([True, False]))
    with pytest.raises(ConfigurationError):
        roc_metrics(np.array([0.0, 1.0]), np.array([True, True]))
    with pytest.raises(ConfigurationError):
        roc_metrics(np.array([0.0, 1.0]), np.array([2, 0]))


def test_dp_bounds():
    assert dp_auc_bound(0.0, 0.0) == pytest.approx(0.5)
    aucs = [dp_auc_bound(eps, 1e-5) for eps in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 50.0)]
    assert all(a < b for a, b in zip(aucs, aucs[1:]))
    assert all(0.5 <= a <= 1.0 for a in aucs)
    assert dp_auc_bound(50.0, 0.0) == pytest.approx(1.0)
    # delta = 0: a = 2x below x = 1/3, then 1 - (1 - x)/2; area 1/9 + 5/9 = 2/3 = e^eps / (1 + e^eps).
    assert dp_auc_bound(math.log(2), 0.0) == pytest.approx(2 / 3)
    assert dp_auc_bound(1.0, 0.0) == pytest.approx(math.e / (1 + math.e))
    assert dp_tpr_bound(math.log(2), 0.0, 0.1) == pytest.approx(0.2)  # min(1, 0.2, 0.55)
    assert dp_tpr_bound(math.log(2), 0.0, 0.5) == pytest.approx(0.75)  # min(1, 1.0, 0.75)
    assert dp_tpr_bound(0.0, 0.1, 0.3) == pytest.approx(0.4)  # min(1, 0.4, 0.4)
    assert dp_tpr_bound(5.0, 0.0, 0.9) == pytest.approx(1 - 0.1 * math.exp(-5))  # third line binds
    assert dp_tpr_bound(1.0, 0.5, 0.6) == 1.0  # capped at 1
    assert dp_tpr_bound(1.0, 1e-5, 0.001) == pytest.approx(math.e * 0.001 + 1e-5)  # 0.0027, privacy.md 3.3
    for bad in ((-1.0, 0.0), (math.inf, 0.0), (1.0, -0.1), (1.0, 1.5)):
        with pytest.raises(ConfigurationError):
            dp_auc_bound(*bad)
    with pytest.raises(ConfigurationError):
        dp_tpr_bound(1.0, 0.0, 1.5)
