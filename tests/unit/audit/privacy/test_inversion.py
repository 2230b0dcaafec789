"""Gradient inversion (DLG, iDLG, Inverting Gradients) and image metrics on sklearn digits (8x8), small MLP.

Measured values (torch 2.13 CPU, this file's seeds) are quoted next to each threshold; thresholds keep margin.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from secfl.audit.privacy import image_metrics as im
from secfl.audit.privacy.inversion import (
    ATTACKS, InversionTarget, Normalization, attack_view, dlg, evaluate_reconstruction, idlg, idlg_labels,
    inverting_gradients, model_gradient, observed_vector,
)
from secfl.exceptions import ConfigurationError
from secfl.training import local_train
from secfl.fl.data import load_dataset
from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.grouping import Buckets, Individual
from secfl.pipeline import Pipeline
from secfl.stages import L2Clip, Quantize
from secfl.types import ServerView, Update

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def data():
    ds = load_dataset("digits", seed=0)
    norm = Normalization.infer(ds.x_train)
    return ds, norm, norm.to_pixels(ds.x_train).mean(axis=0)  # mean image: the "mean" baseline


@pytest.fixture(scope="module")
def mlp():
    return build_model("mlp", input_shape=SHAPE, num_classes=10, seed=0, hidden=32)


def distinct(ds, k, start=0):
    """Indices of the first k test examples from ``start`` with pairwise distinct labels."""
    idx, seen = [], set()
    for i in range(start, len(ds.y_test)):
        if int(ds.y_test[i]) not in seen:
            idx.append(i)
            seen.add(int(ds.y_test[i]))
        if len(idx) == k:
            return idx
    raise AssertionError("not enough labels")


def group_sum(model, x, y):
    """The secure sum of single-example gradient updates: what the server sees for the group."""
    return sum(model_gradient(model, x[i: i + 1], y[i: i + 1]) for i in range(len(y)))


# ---------------------------------------------------------------- metrics

def test_psnr_known_values():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.2, 0.8, size=(2, 1, 8, 8))
    assert im.psnr(ref, ref) == math.inf
    assert im.psnr(ref + 0.1, ref) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert im.psnr(ref + 0.1, ref, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2))
    per = im.psnr(np.stack([ref[0] + 0.1, ref[1] + 0.01]), ref, reduction="none")
    np.testing.assert_allclose(per, [20.0, 40.0])


def slow_ssim(a, b, size, sigma=1.5, data_range=1.0):
    """Textbook SSIM of two 2-D images: loop over every valid window, population (co)variances."""
    ax = np.arange(size) - (size - 1) / 2
    w = np.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * sigma**2))
    w /= w.sum()
    c1, c2, vals = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i: i + size, j: j + size], b[i: i + size, j: j + size]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb, cv = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum(), (w * (pa - ma) * (pb - mb)).sum()
            vals.append((2 * ma * mb + c1) * (2 * cv + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return np.mean(vals)


@pytest.mark.parametrize(("hw", "size"), [(14, 11), (8, 7), (28, 11)])
def test_ssim_matches_a_loop_reference(hw, size):
    rng = np.random.default_rng(hw)
    a = rng.uniform(size=(2, 2, hw, hw))
    b = np.clip(a + rng.normal(0, 0.2, size=a.shape), 0, 1)
    want = [np.mean([slow_ssim(a[n, c], b[n, c], size) for c in range(2)]) for n in range(2)]
    np.testing.assert_allclose(im.ssim(b, a, reduction="none"), want, rtol=1e-10)
    assert im.ssim(a, a) == pytest.approx(1.0) and im.ssim(a, b) == pytest.approx(im.ssim(b, a))


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = np.full((1, 1, 12, 12), 0.3), np.full((1, 1, 12, 12), 0.7)
    c1 = 0.01**2
    assert im.ssim(a, b) == pytest.approx((2 * 0.21 + c1) / (0.09 + 0.49 + c1))


def test_baselines_and_matching():
    ref = np.full((3, 1, 8, 8), 0.5)
    assert im.baseline_psnr(ref, "black") == pytest.approx(10 * math.log10(4))  # MSE 0.25
    assert im.baseline_psnr(ref, "mean", mean_image=ref[0]) == math.inf
    assert im.baseline_psnr(ref, "mean", mean_image=0.4) == pytest.approx(20.0)
    imgs = np.random.default_rng(1).uniform(size=(4, 1, 8, 8))
    rows, cols = im.match_images(imgs[[2, 0, 3, 1]], imgs)
    np.testing.assert_array_equal(cols[np.argsort(rows)], [2, 0, 3, 1])


@pytest.mark.parametrize("call", [
    lambda: im.psnr(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5))),
    lambda: im.psnr(np.zeros((4, 4)), np.zeros((4, 4))),
    lambda: im.psnr(np.full((1, 1, 4, 4), np.nan), np.zeros((1, 1, 4, 4))),
    lambda: im.ssim(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), data_range=0),
    lambda: im.psnr(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), reduction="sum"),
    lambda: im.baseline_psnr(np.zeros((1, 1, 4, 4)), "mean"),
    lambda: im.baseline_psnr(np.zeros((1, 1, 4, 4)), "gray"),
])
def test_metric_errors(call):
    with pytest.raises(ConfigurationError):
        call()


# ---------------------------------------------------------------- label inference

@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["mlp", "logreg"])
def test_idlg_label_is_exact_for_one_example(data, seed, kind):
    ds = data[0]
    model = build_model(kind, input_shape=SHAPE, num_classes=10, seed=seed)
    for i in range(seed, 40, 4):
        g = model_gradient(model, ds.x_test[i: i + 1], ds.y_test[i: i + 1])
        assert idlg_labels(model, g, 1).tolist() == [ds.y_test[i]]


@pytest.mark.parametrize("k", [3, 5])
def test_distinct_labels_of_a_batch_are_the_most_negative_entries(data, mlp, k):
    ds = data[0]
    for start in (0, 50, 100):
        idx = distinct(ds, k, start)
        g = model_gradient(mlp, ds.x_test[idx], ds.y_test[idx])
        assert idlg_labels(mlp, g, k).tolist() == sorted(ds.y_test[idx].tolist())


def test_repeated_labels_and_bias_free_last_layer(data, mlp):
    ds = data[0]
    idx = [i for i in range(200) if ds.y_test[i] == 3][:2] + [i for i in range(200) if ds.y_test[i] == 5][:1]
    g = model_gradient(mlp, ds.x_test[idx], ds.y_test[idx])
    assert idlg_labels(mlp, g, 3).tolist() == [3, 3, 5]  # greedy 1/count accounting (Wainakh et al.)
    torch.manual_seed(0)
    nobias = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10, bias=False))
    g = model_gradient(nobias, ds.x_test[:1], ds.y_test[:1])
    assert idlg_labels(nobias, g, 1).tolist() == [ds.y_test[0]]  # weight-row sums (ReLU inputs >= 0)


# ---------------------------------------------------------------- reconstruction

def test_single_example_gradient_is_reconstructed(data, mlp):
    ds, norm, mean_image = data
    x, y = ds.x_test[:1], ds.y_test[:1]
    target = InversionTarget(mlp, model_gradient(mlp, x, y), SHAPE, 10, normalization=norm)
    scores = {}
    for name, attack, options in [("idlg", idlg, {"iterations": 100}), ("dlg", dlg, {"iterations": 100}),
                                  ("ig", inverting_gradients, {"iterations": 300})]:
        result = attack(target, **options)
        scores[name] = evaluate_reconstruction(result, x, y, mean_image=mean_image)
        assert result.pixels.shape == (1, *SHAPE) and result.pixels.min() >= 0 and result.pixels.max() <= 1
        assert 0 < result.iterations <= options["iterations"] and result.labels.tolist() == [y[0]]
    for s in scores.values():
        assert s["label_accuracy"] == 1.0 and s["psnr_black"] < s["psnr_mean"] < 12  # measured 6.9 / 10.5 dB
    assert scores["idlg"]["psnr"] > 60 and scores["dlg"]["psnr"] > 60  # measured 157 / 124 dB: exact
    assert scores["ig"]["psnr"] > 22 and scores["ig"]["ssim"] > 0.9  # measured 28.1 dB, SSIM 0.99 (TV prior)


def test_one_sgd_step_delta_from_local_train_is_inverted(data, mlp):
    ds, norm, mean_image = data
    x, y = ds.x_test[5:6], ds.y_test[5:6]
    delta = local_train(mlp, x, y, epochs=1, batch_size=1, lr=0.1, seed=0).delta
    target = InversionTarget(mlp, delta, SHAPE, 10, kind="delta", lr=0.1, normalization=norm)
    np.testing.assert_allclose(target.gradient(), model_gradient(mlp, x, y), rtol=1e-3, atol=1e-6)
    score = evaluate_reconstruction(idlg(target, iterations=100), x, y, mean_image=mean_image)
    assert score["psnr"] > 40 and score["label_accuracy"] == 1.0  # measured 149 dB


def test_secure_sum_of_three_single_example_updates_is_inverted_as_a_batch(data, mlp):
    ds, norm, mean_image = data
    idx = distinct(ds, 3)
    x, y = ds.x_test[idx], ds.y_test[idx]
    target = InversionTarget(mlp, group_sum(mlp, x, y), SHAPE, 10, count=3, clients=3, normalization=norm)
    ig = evaluate_reconstruction(inverting_gradients(target, iterations=300), x, y, mean_image=mean_image)
    exact = evaluate_reconstruction(idlg(target, iterations=100), x, y, mean_image=mean_image)
    assert ig["label_accuracy"] == exact["label_accuracy"] == 1.0 and ig["matched"] == 3
    assert ig["psnr"] > ig["psnr_mean"] + 8  # measured 26.2 dB vs mean image 10.8 dB, black 6.7 dB
    assert ig["ssim"] > 0.9  # measured 0.99
    assert exact["psnr"] > 60  # measured 148 dB: all three images exactly


def test_clip_and_large_noise_bring_reconstructions_down_to_the_baseline(data, mlp):
    ds, norm, mean_image = data
    idx = distinct(ds, 3)
    x, y = ds.x_test[idx], ds.y_test[idx]
    clipped = [g / max(1.0, float(np.linalg.norm(g))) for g in (model_gradient(mlp, x[i: i + 1], y[i: i + 1])
                                                                 for i in range(3))]  # L2 clip C = 1
    noise = np.random.default_rng(0).standard_normal(num_params(mlp))
    psnr = {}
    for z in (0.0, 1.0):  # noise std z * C per coordinate on the sum
        observed = (sum(clipped) + z * noise).astype(np.float32)
        target = InversionTarget(mlp, observed, SHAPE, 10, count=3, clients=3, normalization=norm)
        psnr[z] = evaluate_reconstruction(inverting_gradients(target, iterations=300), x, y, mean_image=mean_image)
    assert psnr[0.0]["psnr"] > psnr[0.0]["psnr_mean"] + 8  # measured 26.5 dB
    assert psnr[1.0]["psnr"] < psnr[1.0]["psnr_mean"] + 1.0  # measured 7.8 dB vs mean image 10.8 dB
    assert psnr[1.0]["ssim"] < 0.4  # measured 0.16 (0.98 without noise)


def test_equal_seeds_give_equal_reconstructions(data, mlp):
    ds, norm, _ = data
    idx = distinct(ds, 2)
    target = InversionTarget(mlp, group_sum(mlp, ds.x_test[idx], ds.y_test[idx]), SHAPE, 10, count=2, clients=2,
                             normalization=norm)
    for attack in (dlg, inverting_gradients):
        a, b, c = (attack(target, iterations=30, seed=s) for s in (4, 4, 5))
        np.testing.assert_array_equal(a.inputs, b.inputs)
        assert a.loss == b.loss and not np.array_equal(a.inputs, c.inputs)


# ---------------------------------------------------------------- what the server saw

def test_attack_the_plaintext_view_and_a_decoded_group(data, mlp):
    ds, norm, mean_image = data
    idx = distinct(ds, 3)
    x, y = ds.x_test[idx], ds.y_test[idx]
    updates = [Update(i, local_train(mlp, x[i: i + 1], y[i: i + 1], epochs=1, batch_size=1, lr=0.1, seed=0).delta)
               for i in range(3)]
    out = Pipeline(clients_per_round=3, grouping=Individual()).run_round(updates, rng=np.random.default_rng(0))
    common = {"input_shape": SHAPE, "num_classes": 10, "kind": "delta", "lr": 0.1, "normalization": norm}
    result = attack_view(out.result.view, mlp, client=1, method="idlg", iterations=100, **common)
    assert evaluate_reconstruction(result, x[1:2], y[1:2])["psnr"] > 40  # measured 153 dB
    # one group of 3 summed in floats: the RoundResult's group sum, divided by its weight coordinate
    out = Pipeline(clients_per_round=3, grouping=Buckets(3)).run_round(updates, rng=np.random.default_rng(0))
    mean = observed_vector(out.result, num_params=num_params(mlp), group=0)
    np.testing.assert_allclose(mean, np.mean([u.values for u in updates], axis=0), rtol=1e-5, atol=1e-9)
    result = attack_view(out.result, mlp, group=0, count=3, method="idlg", iterations=100, **common)
    assert evaluate_reconstruction(result, x, y)["psnr"] > 60  # measured 148 dB: all three exactly
    # a secure sum over one group of 3 (ring words): attack the pipeline's decoded group mean
    ring = Pipeline(clients_per_round=3, stages=[L2Clip(1.0), Quantize(scale=2.0**20)], grouping=Buckets(3))
    out = ring.run_round(updates, rng=np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="ring"):
        attack_view(out.result, mlp, group=0, count=3, **common)
    result = attack_view(out.group_means[0].astype(np.float32), mlp, count=3, iterations=300, **common)
    score = evaluate_reconstruction(result, x, y, mean_image=mean_image)
    assert score["label_accuracy"] == 1.0 and score["psnr"] > score["psnr_mean"] + 8  # measured 26.0 dB (iDLG: 107 dB)
    vector = observed_vector(np.append(updates[0].values * 0.5, 0.5), num_params=num_params(mlp))
    np.testing.assert_allclose(vector, updates[0].values, rtol=1e-6)  # the pipeline's [r x, r] layout


@pytest.mark.parametrize("change", [
    {"observed": np.zeros(5, dtype=np.float32)},
    {"observed": np.zeros((2, 2410), dtype=np.float32)},
    {"observed": np.full(2410, np.nan, dtype=np.float32)},
    {"observed": np.zeros(2410, dtype=np.int64)},
    {"input_shape": (1, 7, 7)},
    {"num_classes": 9},
    {"count": 0},
    {"clients": 0},
    {"kind": "weights"},
    {"kind": "delta"},  # without lr
    {"kind": "delta", "lr": -0.1},
    {"model": "mlp"},
])
def test_bad_targets(mlp, change):
    args = {"model": mlp, "observed": np.ones(num_params(mlp), dtype=np.float32), "input_shape": SHAPE,
            "num_classes": 10, **change}
    with pytest.raises(ConfigurationError):
        InversionTarget(**args)


def test_bad_attack_calls(mlp):
    target = InversionTarget(mlp, np.ones(num_params(mlp), dtype=np.float32), SHAPE, 10)
    zero = InversionTarget(mlp, np.zeros(num_params(mlp), dtype=np.float32), SHAPE, 10)
    for call in (lambda: dlg(zero), lambda: idlg(target, iterations=0), lambda: inverting_gradients(target, lr=0),
                 lambda: inverting_gradients(target, tv_weight=-1), lambda: dlg(target, seed=-1),
                 lambda: attack_view(target.observed, mlp, input_shape=SHAPE, num_classes=10, method="gan"),
                 lambda: observed_vector(ServerView("secagg", {0: (b"",)}), num_params=2410, client=0),
                 lambda: observed_vector(ServerView("plaintext", {}), num_params=2410, client=3),
                 lambda: observed_vector(ServerView("plaintext", {}), num_params=2410, group=0),
                 lambda: observed_vector([1.0], num_params=2410), lambda: Normalization(0.0, 0.0)):
        with pytest.raises(ConfigurationError):
            call()
    assert set(ATTACKS) == {"dlg", "idlg", "inverting_gradients"}
