"""The FedAgg bridge inversion in ``secfl audit privacy``: latent codes decode to the devices' private images,
latent_dp's noise takes them to the no-information baseline, public bridges send nothing to invert; the
membership attack runs on the cloud model."""

import numpy as np
import pytest

from secfl import scenario
from secfl.audit.privacy.bridge_inversion import lmmse_codes
from secfl.audit.privacy.run import PrivacyAuditOptions, audit_all
from secfl.exceptions import ConfigurationError
from secfl.methods.fedagg.autoencoder import AutoEncoder
from secfl.methods.fedagg.bridges import private_codes


def fedagg(bridge, **extra):
    """MNIST, 2 edges x 3 devices, 2 rounds; the autoencoder trained 20 epochs on a public split of 300."""
    return scenario.validate({
        "name": bridge, "method": "fedagg", "protocol": {"kind": "secagg+"},
        "grouping": {"kind": "edges", "devices_per_edge": 3},
        "stages": [{"kind": "l2clip", "norm": 400.0}, {"kind": "quantize", "scale": 1024.0}],
        "fedagg": {"edges": 2, "devices_per_edge": 3, "bridge": bridge, "bridge_size": 32, "codes_per_device": 20,
                   "autoencoder_epochs": 20, **extra},
        "run": {"rounds": 2, "seed": 0},
        "data": {"dataset": "mnist", "num_clients": 6, "public": 300, "partition": {"kind": "iid"}},
        "model": {"kind": "mlp", "options": {"hidden": 32}}, "client": {"epochs": 1}})


def test_latent_codes_decode_to_the_private_images_noise_and_public_bridges_do_not(tmp_path):
    scenarios = [fedagg("latent"), fedagg("latent_dp", code_noise=1.0, code_clip=40.0), fedagg("public")]
    options = PrivacyAuditOptions(shadows=2, mia_examples=100)
    results, report = audit_all(scenarios, tmp_path, options)
    by_name = {r["name"]: r for r in results}

    latent = by_name["latent"]["bridges"]
    assert latent["examples"] == 120 and latent["attack"] == "decoded" and latent["label_accuracy"] == 1.0
    # measured 16.4 dB vs the mean image 11.8 / label-only 12.9; SSIM 0.59 vs 0.19 label-only
    assert latent["psnr"] > latent["psnr_label_only"] + 2.5 and latent["psnr"] > latent["psnr_mean"] + 3.5
    assert latent["ssim"] > latent["ssim_label_only"] + 0.2 and latent["beats_label_only"] > 0.9

    noisy = by_name["latent_dp"]["bridges"]
    assert noisy["examples"] == 120 and noisy["attack"] == "denoised"  # decoding the noisy codes as sent: 7 dB
    assert noisy["psnr"] < noisy["psnr_mean"] + 1.0 and noisy["psnr"] < latent["psnr"] - 3  # measured 11.5 vs 11.8
    assert noisy["epsilon_per_example"] > 0 and noisy["label_accuracy"] < 0.8  # randomized response

    public = by_name["public"]["bridges"]
    assert "no client example leaves a device" in public["nothing_to_invert"] and "psnr" not in public

    for result in results:  # FedAgg sends logits: no gradient inversion, no canaries; MIA on the cloud model
        assert "not a model delta" in result["inversion"]["skipped"]
        assert "model delta" in result["audit"]["skipped"]
        mia = result["membership"]
        assert mia["examples"] == 200 and 0 <= mia["loss_threshold"]["auc"] <= 1 and 0 <= mia["lira"]["auc"] <= 1
    assert 0 <= latent["released_membership"]["auc"] <= 1

    text = report.read_text()
    assert "## FedAgg bridge inversion" in text and "| public | public | nothing to invert:" in text
    assert (tmp_path / "latent" / "bridges.png").exists() and (tmp_path / "latent_dp" / "bridges.png").exists()
    assert not (tmp_path / "public" / "bridges.png").exists()


def test_each_code_records_the_example_it_encodes():
    ae = AutoEncoder(1)
    x = np.random.default_rng(0).normal(size=(30, 1, 8, 8)).astype(np.float32)
    y = np.arange(30) % 10
    codes = private_codes(ae, x, y, count=7, num_classes=10, rng=np.random.default_rng(3))
    assert len(codes.index) == 7 and len(set(codes.index.tolist())) == 7
    assert np.array_equal(codes.codes, ae.encode(x[codes.index])) and np.array_equal(codes.y, y[codes.index])


def test_lmmse_keeps_clean_codes_and_shrinks_pure_noise_to_the_prior_mean():
    rng = np.random.default_rng(0)
    prior = rng.normal(size=(500, 4, 2, 2)) * np.linspace(0.5, 3, 16).reshape(1, 4, 2, 2) + 2.0
    codes = prior[:5]
    assert np.allclose(lmmse_codes(codes, prior, 0.0), codes, atol=1e-4)
    shrunk = lmmse_codes(codes + rng.normal(scale=1e4, size=codes.shape), prior, 1e4)
    assert np.allclose(shrunk, prior.mean(axis=0), atol=0.05)
    mean = prior.mean(axis=0).reshape(1, -1)
    halfway = lmmse_codes(codes, prior, 1.0).reshape(5, -1)  # shrunk toward the mean, not to it
    distance, before = np.linalg.norm(halfway - mean, axis=1), np.linalg.norm(codes.reshape(5, -1) - mean, axis=1)
    assert np.all(distance < before) and np.all(distance > 0.3 * before)
    with pytest.raises(ConfigurationError, match="prior"):
        lmmse_codes(codes, prior[:1], 1.0)
