"""AutoFLIP: the guidance and mask maths, the lying explorers, the one-time DP release, and runs end to end."""

from __future__ import annotations

import json
from pathlib import Path

import dp_accounting
import numpy as np
import pytest
import torch

from secfl import engine, scenario
from secfl.exceptions import ConfigurationError
from secfl.hooks import RoundHook
from secfl.attacks.byzantine import lie
from secfl.fl.models import build_model
from secfl.fl.params import flatten
from secfl.methods.autoflip.guidance import hybrid_mask, normalized_scores
from secfl.privacy import Accountant, Ledger
from secfl.runs import RunDir, load_checkpoint


def _mlp(hidden: int = 16) -> torch.nn.Module:
    return build_model("mlp", input_shape=(8,), num_classes=3, seed=0, hidden=hidden)


def test_scores_are_min_max_normalised_per_tensor():
    model = _mlp()
    d = flatten(model).size
    g = np.random.default_rng(0).random(d) * 5 + 1
    s = normalized_scores(model, g)
    offset = 0
    for p in model.parameters():
        chunk = s[offset:offset + p.numel()]
        assert chunk.min() == pytest.approx(0.0) and chunk.max() == pytest.approx(1.0)
        offset += p.numel()


@pytest.mark.parametrize("q", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("q_structured", [0.0, 0.25])
def test_the_mask_prunes_a_fraction_q_and_keeps_the_highest_scores(q, q_structured):
    model = _mlp(32)
    scores = np.random.default_rng(1).random(flatten(model).size)
    mask = hybrid_mask(model, scores, q=q, q_structured=q_structured)
    assert mask.sparsity == pytest.approx(q, abs=0.02)
    if q_structured == 0:  # unstructured only: every kept score beats every pruned one
        assert scores[mask.keep].min() >= scores[~mask.keep].max()
    else:  # some hidden units are gone entirely
        assert sum((~u).sum() for u in mask.keep_units) > 0


def test_an_inflating_liar_spends_its_budget_on_its_top_coordinates():
    dev = np.arange(100, dtype=np.float32)
    out = lie("inflate", dev, fraction=0.05, bound=2.0)
    assert np.linalg.norm(out) == pytest.approx(2.0, rel=1e-5)
    assert set(np.flatnonzero(out)) == set(range(95, 100))
    low = lie("deflate", dev, fraction=0.05, bound=2.0)
    assert set(np.flatnonzero(low)) == set(range(5)) and low[95:].sum() == 0


def test_a_one_time_release_composes_unamplified_and_a_non_private_one_voids_the_claim():
    ledger = Ledger(Accountant("rdp", "poisson"), sample_rate=0.1, delta=1e-5)
    ledger.record(dp_accounting.GaussianDpEvent(1.0), participants=[1])
    before = ledger.epsilon()
    ledger.record_once(dp_accounting.GaussianDpEvent(4.0))
    alone = Accountant("rdp", "poisson").epsilon_of([(dp_accounting.GaussianDpEvent(4.0), 1)], sample_rate=1.0,
                                                     delta=1e-5)
    assert ledger.epsilon() > max(before, alone)  # composed, and not amplified by the sampling rate
    assert ledger.epsilon_server() >= ledger.epsilon()
    ledger.record_once(dp_accounting.NonPrivateDpEvent())
    assert ledger.epsilon() == float("inf") and ledger.epsilon_server() == float("inf")


SCENARIO = {
    "name": "autoflip-test", "method": "autoflip",
    "autoflip": {"q": 0.3, "q_structured": 0.2, "explore_epochs": 3, "patience": 2, "explore_lr": 0.01},
    "run": {"rounds": 2, "seed": 1, "clients_per_round": 4},
    "data": {"dataset": "digits", "num_clients": 8},
    "model": {"kind": "mlp", "options": {"hidden": 16}},
    "client": {"epochs": 1, "batch_size": 16, "lr": 0.1},
}


def _run(tmp_path: Path, name: str, **changes) -> tuple[list[dict], dict]:
    data = json.loads(json.dumps(SCENARIO))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    spec = scenario.validate(data)
    engine.run(spec, RunDir(tmp_path / name))
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    return rows, load_checkpoint(tmp_path / name / "checkpoint.pt")


def test_pruned_coordinates_stay_zero_and_only_kept_ones_travel(tmp_path):
    rows, checkpoint = _run(tmp_path, "plain")
    keep = checkpoint["hooks"][0]["keep"].numpy()
    model = build_model("mlp", input_shape=(64,), num_classes=10, hidden=16)
    model.load_state_dict(checkpoint["model"])
    assert np.all(flatten(model)[~keep] == 0)  # the server's model never regrew a pruned weight
    assert rows[-1]["sparsity"] == pytest.approx(0.3, abs=0.02)
    assert rows[-1]["client_flops"] < rows[-1]["client_flops_full"]  # whole units are gone
    fedavg, _ = _run(tmp_path, "fedavg", method="fedavg", autoflip=None)
    assert rows[-1]["bytes_up"] < 0.8 * fedavg[-1]["bytes_up"]


def test_the_mask_through_secagg_plus_is_identical_to_plaintext(tmp_path):
    _, plain = _run(tmp_path, "plain")
    stages = [{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 65536.0}]
    _, secure = _run(tmp_path, "secure", protocol={"kind": "secagg+"}, stages=stages, grouping={"kind": "one_group"})
    assert torch.equal(plain["hooks"][0]["keep"], secure["hooks"][0]["keep"])


def _keep(tmp_path: Path, name: str, **changes) -> np.ndarray:
    _, checkpoint = _run(tmp_path, name, **changes)
    return checkpoint["hooks"][0]["keep"].numpy()  # the method's hook comes before the attack's


def test_lying_explorers_move_the_mask_and_min_support_pulls_it_back(tmp_path):
    options = dict(SCENARIO["autoflip"], q_structured=0.0)
    honest = _keep(tmp_path, "honest", autoflip=options)
    attack = {"kind": "none", "num_byzantine": 2, "explore": "inflate", "explore_fraction": 0.05}
    attacked = _keep(tmp_path, "attacked", autoflip=options, attack=attack)
    defended = _keep(tmp_path, "defended", autoflip=dict(options, min_support=3), attack=attack)
    moved, kept_back = np.sum(honest != attacked), np.sum(honest != defended)
    assert moved > 0.05 * honest.size  # two liars of eight rewrite a sizeable part of the mask
    assert kept_back < moved  # a coordinate needs three explorers' support: the liars alone cannot protect it


def test_min_support_beside_exploration_noise_is_refused():
    data = json.loads(json.dumps(SCENARIO))
    data["autoflip"].update(min_support=2, noise_multiplier=1.0)
    with pytest.raises(Exception, match="min_support"):
        scenario.validate(data)


def test_a_dp_exploration_is_charged_once_and_a_noiseless_one_voids_the_dp_claim(tmp_path):
    stages = [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 1.0,
                                                 "placement": "central"}]
    noisy = dict(SCENARIO["autoflip"], noise_multiplier=2.0)
    rows, _ = _run(tmp_path, "dp", stages=stages, autoflip=noisy)
    assert np.isfinite(rows[-1]["epsilon"]) and rows[-1]["epsilon"] > 0
    rows, _ = _run(tmp_path, "void", stages=stages)
    assert rows[-1]["epsilon"] == float("inf")


# Found by an adversarial review: each of these failed before its fix.

def test_a_noisy_exploration_does_not_make_non_private_rounds_look_private(tmp_path):
    rows, _ = _run(tmp_path, "r", autoflip=dict(SCENARIO["autoflip"], noise_multiplier=1.0))
    assert "epsilon" not in rows[-1]  # the rounds release updates in the clear: no epsilon is claimed
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [r["release"] for r in summary["releases"]] == ["exploration"]
    assert np.isfinite(summary["releases"][0]["epsilon"])  # the exploration's own epsilon
    assert summary["releases"][0]["epsilon_server"] == float("inf")  # over Plaintext the server saw each D_k


def test_an_exploration_run_again_after_a_crash_is_charged_twice(tmp_path):
    stages = [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 1.0,
                                                 "placement": "central"}]
    data = dict(json.loads(json.dumps(SCENARIO)), stages=stages)
    data["autoflip"]["noise_multiplier"] = 2.0
    spec = scenario.validate(data)

    class Crash(RoundHook):
        def client_data(self, ctx, cid, x, y):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.run(spec, RunDir(tmp_path / "crashed"), hooks=[Crash()])
    engine.run(spec, RunDir(tmp_path / "crashed"), resume=True)
    engine.run(spec, RunDir(tmp_path / "clean"))
    twice = [json.loads(line) for line in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    once = [json.loads(line) for line in (tmp_path / "clean" / "metrics.jsonl").read_text().splitlines()]
    assert len(RunDir(tmp_path / "crashed").releases()) == 2
    assert twice[-1]["epsilon"] > once[-1]["epsilon"]


def test_the_checked_pipeline_cannot_be_swapped_by_a_hook(tmp_path):
    class Swap(RoundHook):
        def before_round(self, ctx):
            ctx.pipeline.aggregator = None

    with pytest.raises(ConfigurationError, match="cannot change"):
        engine.run(scenario.validate({k: v for k, v in SCENARIO.items() if k not in ("method", "autoflip")}),
                   RunDir(tmp_path / "s"), hooks=[Swap()])


@pytest.mark.parametrize("change, match", [
    ({"autoflip": dict(SCENARIO["autoflip"], min_support=9)}, "exceeds the 8 explorers"),
    ({"autoflip": dict(SCENARIO["autoflip"], buckets=5)}, "cannot fill 5 buckets"),
    ({"aggregator": {"kind": "fltrust"}}, "sends other vectors"),
    ({"options": {"q": 0.2}}, "either in"),
    ({"privacy": {"budget": 5.0}, "stages": [{"kind": "l2clip", "norm": 1.0},
                                             {"kind": "gaussian_noise", "noise_multiplier": 1.0}],
      "protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"}}, "release without noise"),
])
def test_exploration_setups_that_cannot_work_are_refused_before_training(change, match):
    data = json.loads(json.dumps(SCENARIO))
    data.update(change)
    with pytest.raises(ConfigurationError, match=match):
        scenario.validate(data)


def test_an_exploration_attack_needs_autoflip():
    data = {k: v for k, v in json.loads(json.dumps(SCENARIO)).items() if k not in ("method", "autoflip")}
    data["attack"] = {"kind": "none", "num_byzantine": 1, "explore": "inflate"}
    with pytest.raises(ConfigurationError, match="needs method"):
        scenario.validate(data)


def test_one_liar_adds_at_most_one_to_a_coordinates_support():
    from secfl.methods.autoflip.explore import secure_support
    from secfl.types import Update
    honest = [Update(i, np.zeros(50, dtype=np.float32)) for i in range(4)]
    liar = np.zeros(50, dtype=np.float32)
    liar[7], liar[:3] = np.sqrt(50), 2.0
    counts = secure_support([*honest, Update(4, liar)], protocol={"kind": "secagg+"},
                            rng=np.random.default_rng(0))
    assert counts.max() <= 1


def test_autoflip_runs_over_the_homomorphic_sum(tmp_path):
    stages = [{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 4096.0}]
    rows, _ = _run(tmp_path, "he", protocol={"kind": "he"}, stages=stages, grouping={"kind": "one_group"},
                   run={"rounds": 1, "seed": 1, "clients_per_round": 4})
    assert rows[-1]["sparsity"] == pytest.approx(0.3, abs=0.02)


def test_the_adaptive_mask_follows_each_rounds_explorers_and_stays_enforced(tmp_path):
    options = dict(SCENARIO["autoflip"], adaptive=True)
    rows, checkpoint = _run(tmp_path, "adaptive", autoflip=options, run={"rounds": 3, "seed": 1,
                                                                         "clients_per_round": 4},
                            server={"lr": 1.0, "momentum": 0.9})  # momentum would regrow newly pruned weights
    assert rows[0]["mask_changed"] == 0.0 and any(r["mask_changed"] > 0 for r in rows[1:])
    keep = checkpoint["hooks"][0]["keep"].numpy()
    model = build_model("mlp", input_shape=(64,), num_classes=10, hidden=16)
    model.load_state_dict(checkpoint["model"])
    assert np.all(flatten(model)[~keep] == 0)  # the last round's mask holds on the server's model
    assert len(RunDir(tmp_path / "adaptive").releases()) == 3  # one release of the re-summed D_k per round
    assert len(checkpoint["hooks"][0]["deviations"]) == 8  # every explorer keeps its D_k across a resume


def test_adaptive_with_min_support_is_refused():
    data = json.loads(json.dumps(SCENARIO))
    data["autoflip"].update(adaptive=True, min_support=2)
    with pytest.raises(ConfigurationError, match="adaptive"):
        scenario.validate(data)


# Found by a second review: each failed before its fix.

DP_STAGES = [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "placement": "central"}]


def test_an_adaptive_run_calibrated_to_a_target_ends_within_it(tmp_path):
    data = json.loads(json.dumps(SCENARIO))
    data.update(stages=DP_STAGES, privacy={"target_epsilon": 8.0}, run={"rounds": 4, "seed": 1, "clients_per_round": 4})
    data["autoflip"].update(adaptive=True, noise_multiplier=3.0)
    engine.run(scenario.validate(data), RunDir(tmp_path / "a"))  # every round releases: calibrated for that
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[-1]["epsilon"] <= 8.0 * (1 + 1e-6)


def test_a_release_that_would_pass_the_budget_is_not_made(tmp_path):
    data = json.loads(json.dumps(SCENARIO))
    stages = [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 4.0,
                                                 "placement": "central"}]
    data.update(stages=stages, privacy={"budget": 2.5})
    data["autoflip"]["noise_multiplier"] = 1.0  # the exploration alone costs about 10.7
    with pytest.raises(Exception, match="one-time release"):
        engine.run(scenario.validate(data), RunDir(tmp_path / "b"))
    assert RunDir(tmp_path / "b").releases() == []  # refused before anything was released
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["epsilon"] <= 2.5
