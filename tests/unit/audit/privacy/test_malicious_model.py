"""Trap weights and model inconsistency (issue 22) on digits: exact recovery from one update, fewer examples
recovered as more clients share the sum, a dead model's zero update, the model binding stopping the
inconsistency attack, and bad input refused."""

import json

import numpy as np
import pytest
import torch

from secfl import scenario
from secfl.audit.privacy.image_metrics import Normalization
from secfl.audit.privacy.imprint import dead_model, imprint_model, recover, score
from secfl.audit.privacy.malicious_model import (MaliciousRound, audit_malicious_model, population,
                                                 run_malicious_round)
from secfl.audit.privacy.malicious_report import malicious_lines
from secfl.audit.privacy.run import PrivacyAuditOptions
from secfl.exceptions import ConfigurationError
from secfl.fl.data import load_dataset

CLIP_QUANT = [{"kind": "l2clip", "norm": 1.0}, {"kind": "quantize", "scale": 65536.0}]


def spec(protocol="secagg+", grouping="one_group", *, per_round=20, stages=CLIP_QUANT, target=None):
    data = {"name": f"{protocol}-{grouping}", "stages": list(stages), "protocol": {"kind": protocol},
            "grouping": {"kind": grouping, **({"size": 4} if grouping == "buckets" else {})},
            "run": {"rounds": 10, "clients_per_round": per_round, "seed": 0},
            "data": {"dataset": "digits", "num_clients": 40, "partition": {"kind": "iid", "min_per_client": 8}},
            "model": {"kind": "mlp", "options": {"hidden": 16}}, "client": {"batch_size": 8, "lr": 0.1}}
    if target is not None:
        data["privacy"] = {"target_epsilon": target}
    return scenario.validate(data)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _delta(model, x, y, lr=0.1):
    loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return (-lr * torch.cat([g.reshape(-1) for g in grads])).numpy()


def test_one_update_gives_back_every_example_alone_in_its_bin_exactly(digits):
    bins = 64
    model = imprint_model(digits.input_shape, digits.num_classes, bins=bins, public_x=digits.x_test)
    x, y = digits.x_train[:12], digits.y_train[:12]
    # the bin of each example: units 0..j fire for an example of bin j (ascending thresholds)
    with torch.no_grad():
        firing = (model.imprint(torch.as_tensor(x).flatten(1)) > 0).numpy()
    assert np.all(firing[:, 0]) and np.all(np.diff(firing.astype(int), axis=1) <= 0)
    which = firing.sum(axis=1) - 1
    alone = np.array([np.sum(which == b) == 1 for b in which])
    assert alone.sum() >= 8  # 12 examples in 64 bins: most alone
    norm = Normalization.infer(digits.x_train)
    candidates, found = recover(_delta(model, x, y), model)
    result = score(np.clip(norm.to_pixels(candidates), 0, 1), np.clip(norm.to_pixels(x), 0, 1))
    assert np.all(result.best_psnr[alone] > 40)
    assert np.all(result.best_psnr[~alone] < 25)  # two examples in one bin: their mixture, not either one
    assert result.summary["fraction"] == pytest.approx(alone.mean())
    assert sorted(found) == sorted(set(which.tolist()))  # one candidate per occupied bin, none for empty ones
    assert result.summary["fraction_mean_image"] == 0 and result.summary["fraction_black"] == 0


def test_one_client_in_plaintext_is_recovered_exactly_through_the_pipeline():
    s = spec("plaintext", "individual", stages=[])
    out = run_malicious_round(s, MaliciousRound("trap_weights", 1, bins=128))
    summary = out.summary
    assert summary["refused"] is None and summary["examples"] == 8
    assert summary["recovered"] >= 7 and summary["exact"] == summary["recovered"]  # > 40 dB each
    assert np.sum(out.best_psnr > 40) == summary["recovered"]


def test_fewer_examples_are_recovered_as_more_clients_share_the_secure_sum():
    s = spec()
    pop = population(s)
    fractions = [run_malicious_round(s, MaliciousRound("trap_weights", n, bins=32), data=pop).summary["fraction"]
                 for n in (3, 8, 20)]  # 24, 64, 160 examples in 32 bins
    assert fractions[0] > fractions[1] > fractions[2]
    assert fractions[0] >= 0.3


@pytest.mark.parametrize("shape", [(1, 8, 8), (30,)])
def test_a_dead_model_updates_nothing_on_any_data(shape):
    model = dead_model(shape, 10, bins=16)
    rng = np.random.default_rng(0)
    for scale in (1.0, 100.0):
        x = (scale * rng.standard_normal((16, *shape))).astype(np.float32)
        y = rng.integers(0, 10, 16)
        assert np.all(_delta(model, x, y) == 0)
    assert np.any(_delta(imprint_model(shape, 10, bins=16, public_x=rng.standard_normal((50, *shape))), x, y) != 0)


def test_the_binding_stops_the_inconsistency_attack_but_not_trap_weights():
    s = spec(per_round=5)
    pop = population(s)
    runs = {(a, b): run_malicious_round(s, MaliciousRound(a, 5, bins=64, binding=b), data=pop).summary
            for a in ("trap_weights", "inconsistency") for b in (False, True)}
    unbound, bound = runs["inconsistency", False], runs["inconsistency", True]
    assert unbound["fraction"] >= 0.5 and unbound["target_in_sum"]
    assert bound["binds"] and bound["fraction"] == 0 and bound["recovered"] == 0
    assert bound["excluded"] == [bound["target"]] and not bound["target_in_sum"]
    assert runs["trap_weights", True]["fraction"] == runs["trap_weights", False]["fraction"] > 0
    assert runs["trap_weights", True]["excluded"] == []


def test_the_binding_refuses_a_bucket_left_too_small():
    # buckets of 4 under SecAgg: the target's bucket keeps 3 of 4 or the round is refused; either way nothing leaks
    s = spec("secagg", "buckets", per_round=8)
    out = run_malicious_round(s, MaliciousRound("inconsistency", 8, bins=64, binding=True)).summary
    assert out["recovered"] == 0 and out["fraction"] == 0
    assert out["refused"] is not None or not out["target_in_sum"]


def test_the_client_side_model_check_refuses_the_crafted_models():
    s = spec(per_round=5)
    pop = population(s)
    for attack in ("trap_weights", "inconsistency"):
        out = run_malicious_round(s, MaliciousRound(attack, 5, bins=64, model_check=True), data=pop).summary
        assert out["model_check"] and len(out["model_refusals"]) == 5
        assert out["refused"].startswith("InsufficientParticipantsError") and out["recovered"] == 0
    unchecked = run_malicious_round(s, MaliciousRound("trap_weights", 5, bins=64), data=pop).summary
    assert not unchecked["model_check"] and unchecked["model_refusals"] == [] and unchecked["recovered"] > 0


def test_distributed_noise_at_epsilon_8_leaves_nothing_above_the_threshold():
    s = spec(stages=[{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "placement": "distributed"},
                     {"kind": "quantize", "scale": 65536.0}], target=8.0)
    out = run_malicious_round(s, MaliciousRound("inconsistency", 5, bins=64)).summary
    assert out["noise_multiplier"] > 0 and out["recovered"] == 0


def test_the_audit_section_has_every_run_and_its_pictures(tmp_path):
    s = spec(per_round=5)
    entry = audit_malicious_model(s, tmp_path / s.name, bins=32)
    assert [(r["attack"], r["binding"]) for r in entry["runs"]] == [
        ("trap_weights", False), ("trap_weights", True), ("inconsistency", False), ("inconsistency", True)]
    assert all((tmp_path / s.name / r["png"]).stat().st_size > 1000 for r in entry["runs"] if r.get("png"))
    lines = malicious_lines([json.loads(json.dumps({"name": s.name, "malicious_model": entry}))], tmp_path)
    table = [line for line in lines if line.startswith(f"| {s.name} |")]
    assert len(table) == 4 and "Malicious server through the model" in lines[0]
    skipped = audit_malicious_model(s.model_copy(update={"stages": [{"kind": "ddgauss", "dim": 10}]}), tmp_path)
    assert "skipped" in skipped


def test_bad_options_are_refused(digits):
    bad_rounds = [dict(attack="spy"), dict(clients=0), dict(bins=0), dict(batch_size=0), dict(threshold=-1.0),
                  dict(binding="yes"), dict(seed=-1), dict(clients=True), dict(model_check="yes")]
    for bad in bad_rounds:
        with pytest.raises(ConfigurationError):
            MaliciousRound(**{"attack": "trap_weights", "clients": 2, **bad})
    for bad in (dict(malicious_bins=0), dict(malicious_model="yes")):
        with pytest.raises(ConfigurationError):
            PrivacyAuditOptions(**bad)
    with pytest.raises(ConfigurationError):
        run_malicious_round(spec(per_round=5), MaliciousRound("trap_weights", 6))  # more than the round takes
    with pytest.raises(ConfigurationError):
        run_malicious_round(spec(per_round=5), "trap_weights")
    with pytest.raises(ConfigurationError):
        imprint_model(digits.input_shape, 10, bins=8, public_x=digits.x_test[:, 0])  # wrong shape
    with pytest.raises(ConfigurationError):
        imprint_model(digits.input_shape, 10, bins=8, public_x=np.zeros((20, *digits.input_shape)))  # ties
    model = imprint_model(digits.input_shape, 10, bins=8, public_x=digits.x_test)
    with pytest.raises(ConfigurationError):
        recover(np.zeros(5), model)
    with pytest.raises(ConfigurationError):
        recover(np.zeros(sum(p.numel() for p in model.parameters())), torch.nn.Linear(2, 2))
    with pytest.raises(ConfigurationError):
        score(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 4, 4)))
    with pytest.raises(ConfigurationError):
        score(np.zeros((2, 1, 8, 8)), np.zeros((2, 1, 8, 8)), threshold=0)
