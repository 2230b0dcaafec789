"""FedAgg: the combining rules, the distillation loss, the bridge sources and their DP, the tree grouping,
the scenario checks, and runs end to end (resume, releases, attacks on distillation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from secfl import engine, scenario
from secfl.attacks import build_attack
from secfl.exceptions import ConfigurationError
from secfl.fl.data import hold_out_public, load_dataset
from secfl.grouping import Edges
from secfl.hooks import RoundHook
from secfl.methods.fedagg.bridges import Pool, code_event, private_codes, randomized_response
from secfl.methods.fedagg.combine import combine
from secfl.methods.fedagg.distill import kd_loss
from secfl.runs import RunDir

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCENARIO = {
    "name": "fedagg-test", "method": "fedagg",
    "grouping": {"kind": "edges", "devices_per_edge": 3},
    "fedagg": {"edges": 2, "devices_per_edge": 3, "bridge_size": 48, "codes_per_device": 20,
               "autoencoder_epochs": 2, "distill_lr": 0.01, "device_model": {"kind": "mlp", "options": {"hidden": 8}},
               "edge_model": {"kind": "mlp", "options": {"hidden": 16}}},
    "run": {"rounds": 2, "seed": 3},
    "data": {"dataset": "digits", "num_clients": 6, "public": 300},
    "model": {"kind": "mlp", "options": {"hidden": 32}},
    "client": {"epochs": 1, "batch_size": 16, "lr": 0.1},
}


def _spec(**changes) -> scenario.Scenario:
    data = json.loads(json.dumps(SCENARIO))
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return scenario.validate(data)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


# -- combining children's logits

def test_mean_weighs_buckets_by_their_children():
    v = np.array([[0.0, 0.0], [3.0, 3.0]])
    assert np.allclose(combine(v, np.array([2.0, 1.0]), rule="mean", classes=2), [1.0, 1.0])


@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "agreement"])
def test_robust_rules_ignore_one_flipped_child_of_five(rule):
    rng = np.random.default_rng(0)
    honest = rng.normal(0, 0.1, size=(4, 20 * 3)) + np.tile([5.0, 0.0, 0.0], 20)
    bad = -100 * honest.mean(axis=0, keepdims=True)
    out = combine(np.vstack([honest, bad]), np.ones(5), rule=rule, classes=3)
    assert np.abs(out - honest.mean(axis=0)).max() < 0.5
    assert np.abs(combine(np.vstack([honest, bad]), np.ones(5), rule="mean", classes=3)
                  - honest.mean(axis=0)).max() > 10


def test_agreement_gives_no_weight_to_a_child_that_never_agrees():
    honest = np.tile([3.0, 0.0], (3, 4))
    bad = np.tile([0.0, 9.0], (1, 4))
    assert np.allclose(combine(np.vstack([honest, bad]), np.ones(4), rule="agreement", classes=2), honest[0])


def test_kd_loss_is_zero_for_equal_logits_and_grows_with_temperature_squared():
    s = torch.tensor([[1.0, 2.0, 0.5]])
    assert kd_loss(s, s, 3.0).item() == pytest.approx(0.0, abs=1e-5)
    t = torch.tensor([[3.0, -1.0, 0.0]])
    assert kd_loss(s, t, 1.0).item() > 0
    assert kd_loss(s * 2, t * 2, 2.0).item() == pytest.approx(4 * kd_loss(s, t, 1.0).item(), rel=1e-3)


# -- bridges and their privacy

def test_randomized_response_keeps_labels_at_the_rate_epsilon_allows():
    y = np.zeros(40_000, dtype=np.int64)
    out = randomized_response(y, 1.0, 10, np.random.default_rng(0))
    keep = math.e / (math.e + 9)
    assert abs((out == 0).mean() - keep) < 0.01
    others = np.bincount(out[out != 0], minlength=10)[1:]
    assert others.min() > 0.8 * others.mean()  # the replacement is uniform over the other labels


def test_dp_codes_are_clipped_then_noised_and_count_is_respected():
    class Identity:
        def encode(self, x):
            return x.reshape(len(x), 1, 2, 2).astype(np.float32)

    x = np.full((50, 4), 10.0, dtype=np.float32)
    y = np.arange(50) % 10
    plain = private_codes(Identity(), x, y, count=30, num_classes=10, rng=np.random.default_rng(0))
    assert len(plain.y) == 30 and np.allclose(plain.codes, 10.0)
    dp = private_codes(Identity(), x, y, count=30, num_classes=10, rng=np.random.default_rng(0),
                       dp=(1.0, 0.0001, 50.0))
    assert np.allclose(np.linalg.norm(dp.codes.reshape(30, -1), axis=1), 1.0, atol=1e-2)
    noisy = private_codes(Identity(), x, y, count=50, num_classes=10, rng=np.random.default_rng(0),
                          dp=(1.0, 3.0, 50.0))
    assert np.std(noisy.codes - 0.5) == pytest.approx(3.0, rel=0.15)


def test_the_code_event_prices_the_label_at_its_epsilon():
    accountant = scenario.validate({}).accountant()
    label_only = accountant.epsilon_of([], sample_rate=1.0, delta=1e-5,
                                       unsampled=[(code_event(1e6, 2.0, 10).events[1], 1)])
    assert label_only == pytest.approx(2.0, abs=0.01)
    both = accountant.epsilon_of([], sample_rate=1.0, delta=1e-5, unsampled=[(code_event(2.0, 2.0, 10), 1)])
    assert both > label_only


# -- the tree

def test_edges_group_inside_each_edge_and_refuse_a_cut_edge():
    grouping = Edges(devices_per_edge=3)
    assert grouping.assign([0, 1, 2, 3, 4, 5], rng=np.random.default_rng(0)) == [[0, 1, 2], [3, 4, 5]]
    buckets = Edges(devices_per_edge=4, bucket_size=2).assign(list(range(8)), rng=np.random.default_rng(0))
    assert len(buckets) == 4 and all({c // 4 for c in g} in ({0}, {1}) for g in buckets)
    assert sorted(c for g in buckets for c in g) == list(range(8))
    with pytest.raises(ConfigurationError, match="edge 1 has 2 of its 3"):
        grouping.assign([0, 1, 2, 3, 4], rng=np.random.default_rng(0))
    assert grouping.min_group_size(4) == 0 and grouping.min_group_size(6) == 3


def test_the_public_split_is_disjoint_from_the_clients_and_fixed_by_the_seed():
    data = load_dataset("digits", seed=0)
    a, b = hold_out_public(data, 300, seed=1), hold_out_public(data, 300, seed=1)
    assert abs(len(a.y_public) - 300) <= 10 and len(a.y_train) + len(a.y_public) == len(data.y_train)
    assert np.array_equal(a.x_public, b.x_public)
    rows = {r.tobytes() for r in a.x_train.reshape(len(a.x_train), -1)}
    assert not any(r.tobytes() in rows for r in a.x_public.reshape(len(a.x_public), -1))
    with pytest.raises(ConfigurationError, match="data.public"):
        hold_out_public(data, len(data.y_train), seed=0)


@pytest.mark.parametrize("change, message", [
    ({"grouping": {"kind": "one_group"}}, "grouping = { kind = \"edges\", devices_per_edge = 3 }"),
    ({"data": {"num_clients": 9}}, "3 = 6 devices"),
    ({"data": {"public": 0}}, "data.public"),
    ({"server": {"lr": 0.5}}, "server.lr = 1"),
    ({"aggregator": {"kind": "median"}}, "fedagg.rule"),
    ({"run": {"rounds": 2, "clients_per_round": 3}}, "every client in every round"),
    ({"fedagg": {"poisoned_edges": 2}}, "at least one honest edge"),
    ({"fedagg": {"rule": "krum"}}, "fedagg.rule"),
    ({"data": {"dataset": "synthetic", "options": {"num_clients": 6}}, "fedagg": {"bridge": "latent"}},
     "use bridge = \"public\""),
])
def test_a_scenario_that_cannot_run_fedagg_says_what_to_change(change, message):
    with pytest.raises(ConfigurationError) as error:
        _spec(**change)
    assert message in str(error.value)


def test_targeted_logits_make_the_target_every_samples_top_class():
    attack = build_attack({"kind": "targeted_logits", "target": 2, "classes": 4})
    honest = np.random.default_rng(0).normal(size=(3, 40))
    forged = attack(honest, num_byzantine=2, rng=np.random.default_rng(1))
    assert (forged.reshape(2, -1, 4).argmax(axis=2) == 2).all()
    with pytest.raises(ConfigurationError, match="classes"):
        attack(np.ones((3, 42)), num_byzantine=1, rng=np.random.default_rng(1))


# -- end to end

def test_a_run_distils_without_averaging_and_reports_every_link(tmp_path):
    engine.run(_spec(), RunDir(tmp_path / "r"))
    rows = _rows(tmp_path / "r")
    last = rows[-1]
    for key in ("device_accuracy", "edge_accuracy", "link_device_edge_up", "link_edge_device_down",
                "link_edge_cloud_up", "link_cloud_edge_down"):
        assert key in last and last[key] >= 0
    assert last["link_edge_cloud_up"] == 4 * 48 * 10  # logits only
    assert last["link_edge_device_down"] == 4 * 48 * (10 + 64)  # the edge's logits and the raw public inputs
    assert last["bytes_down"] == 6 * last["link_edge_device_down"]  # never the cloud model
    assert last["groups"] == 2  # one secure sum per edge
    assert last["accuracy"] > 0.2 and last["device_accuracy"] > 0.2


def test_a_resumed_latent_run_equals_an_uninterrupted_one(tmp_path):
    class CrashInRound2(RoundHook):
        def before_round(self, ctx):
            if ctx.round == 2:
                raise KeyboardInterrupt

    spec = _spec(fedagg={"bridge": "latent"})
    engine.run(spec, RunDir(tmp_path / "whole"), hooks=[RoundHook()])
    with pytest.raises(KeyboardInterrupt):
        engine.run(spec, RunDir(tmp_path / "resumed"), hooks=[CrashInRound2()])
    engine.run(spec, RunDir(tmp_path / "resumed"), resume=True, hooks=[RoundHook()])
    whole, resumed = _rows(tmp_path / "whole"), _rows(tmp_path / "resumed")
    for key in ("accuracy", "device_accuracy", "edge_accuracy"):
        assert [r[key] for r in whole] == [r[key] for r in resumed]
    assert len(RunDir(tmp_path / "resumed").releases()) == 1  # the codes were not sent again
    from secfl.runs import load_checkpoint
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["hooks"][0]
    assert len(state["index"]) == 6 and all(len(i) == len(y) for i, y in zip(state["index"], state["labels"], strict=True))
    assert "link_codes_once" in whole[0] and "link_codes_once" not in whole[1]


def test_latent_dp_records_its_release_and_its_per_example_epsilon(tmp_path):
    engine.run(_spec(fedagg={"bridge": "latent_dp"}, run={"rounds": 1, "seed": 3}), RunDir(tmp_path / "r"))
    releases = RunDir(tmp_path / "r").releases()
    assert [r["release"] for r in releases] == ["fedagg/latent_dp"]
    assert np.isfinite(releases[0]["epsilon"])
    assert 0 < _rows(tmp_path / "r")[0]["bridge_epsilon_example"] < releases[0]["epsilon"]


def test_a_poisoned_edge_sends_forged_logits_and_the_median_over_edges_resists(tmp_path):
    attack = {"poisoned_edges": 1, "edge_attack": {"kind": "targeted_logits", "target": 0, "margin": 30.0},
              "edges": 3}
    base = {"grouping": {"kind": "edges", "devices_per_edge": 2}, "data": {"num_clients": 6, "public": 300},
            "run": {"rounds": 3, "seed": 3}}
    fed = dict(SCENARIO["fedagg"], devices_per_edge=2, **attack)
    engine.run(_spec(**base, fedagg=fed), RunDir(tmp_path / "mean"))
    engine.run(_spec(**base, fedagg=dict(fed, rule="median")), RunDir(tmp_path / "median"))
    mean, median = _rows(tmp_path / "mean")[-1], _rows(tmp_path / "median")[-1]
    assert median["accuracy"] > mean["accuracy"] + 0.1


def test_without_bridge_labels_the_cloud_learns_only_from_its_children(tmp_path):
    from secfl.fl.models import build_model
    from secfl.runs import load_checkpoint

    spec = _spec(fedagg={"bridge_labels": False, "alpha_nonleaf": 0.0}, run={"rounds": 1, "seed": 3})
    engine.run(spec, RunDir(tmp_path / "r"))
    initial = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, seed=3, hidden=32).state_dict()
    trained = load_checkpoint(tmp_path / "r" / "checkpoint.pt")["model"]
    assert all(torch.equal(initial[k], trained[k]) for k in initial)  # no label and no KL weight: no signal
    engine.run(_spec(fedagg={"bridge_labels": False}, run={"rounds": 1, "seed": 3}), RunDir(tmp_path / "kl"))
    moved = load_checkpoint(tmp_path / "kl" / "checkpoint.pt")["model"]
    assert not all(torch.equal(initial[k], moved[k]) for k in initial)



def test_every_bridge_set_has_bridge_size_samples_even_from_a_smaller_pool():
    # found by the bench: an edge whose devices held fewer codes than bridge_size drew a smaller bridge set,
    # and its devices' vectors no longer had the other edges' length in the secure sum
    pool = Pool(np.arange(30, dtype=np.float32).reshape(30, 1), np.arange(30))
    small = pool.sample(40, np.random.default_rng(0))
    assert len(small.y) == 40 and set(small.y) == set(range(30))
    big = pool.sample(10, np.random.default_rng(0))
    assert len(big.y) == 10 and len(set(big.y)) == 10
    with pytest.raises(ConfigurationError):
        Pool(np.zeros((0, 1)), np.zeros(0, dtype=np.int64)).sample(3, np.random.default_rng(0))


# -- found by an adversarial review: each failed before its fix

def test_a_byzantine_device_forges_from_the_honest_logits_of_its_own_edge(tmp_path):
    from secfl.hooks import RoundContext

    seen = {}

    class Spy(RoundHook):
        def round_updates(self, ctx, updates):
            seen["ctx"], seen["updates"] = ctx, dict(updates)
            return updates

    spec = _spec(attack={"kind": "sign_flip", "num_byzantine": 1, "options": {"scale": 3.0}},
                 run={"rounds": 1, "seed": 3})
    engine.run(spec, RunDir(tmp_path / "r"), hooks=[Spy()])
    ctx, updates = seen["ctx"], seen["updates"]  # the Spy runs after the Adversary: forged updates are in
    assert isinstance(ctx, RoundContext) and ctx.cohort is not None
    adversary = next(h for h in ctx.hooks if type(h).__name__ == "Adversary")
    (bad,) = adversary.ids
    same_edge = [updates[c].values for c in range(6) if c // 3 == bad // 3 and c != bad]
    assert np.allclose(updates[bad].values, -3 * np.mean(same_edge, axis=0), atol=1e-4)


@pytest.mark.parametrize("change, message", [
    ({"fedagg": {"poisoned_edges": 1, "edge_attack": {"kind": "targeted_logits", "classes": 5}}}, "set classes = 10"),
    ({"fedagg": {"rule": "median", "edges": 2}}, "needs >= 3 inputs somewhere"),
    ({"fedagg": {"device_model": {"kind": "nosuch"}}}, "fedagg.device_model"),
    ({"fedagg": {"edge_model": {"kind": "cnn", "options": 3}}}, "fedagg.edge_model"),
    ({"fedagg": {"bridge": "latent", "bridge_labels": False}}, "bridge_labels = false applies"),
    ({"grouping": {"kind": "edges", "devices_per_edge": 3, "bucket_size": 4}}, "exceeds devices_per_edge"),
])
def test_review_configs_are_refused_before_training(change, message):
    with pytest.raises(ConfigurationError) as error:
        _spec(**change)
    assert message in str(error.value)


def test_targeted_logits_needs_a_method_that_sends_logits():
    data = json.loads(json.dumps(SCENARIO))
    data.update(method="fedavg", grouping={"kind": "individual"},
                attack={"kind": "targeted_logits", "num_byzantine": 1})
    data.pop("fedagg")
    with pytest.raises(ConfigurationError, match="does not send logits"):
        scenario.validate(data)


def test_bytes_count_the_protocol_downlink_and_the_one_time_codes(tmp_path):
    spec = _spec(fedagg={"bridge": "latent"}, protocol={"kind": "secagg+"},
                 stages=[{"kind": "l2clip", "norm": 1000.0}, {"kind": "quantize", "scale": 1024.0}])
    engine.run(spec, RunDir(tmp_path / "r"))
    first, second = _rows(tmp_path / "r")
    assert second["bytes_down"] > 6 * second["link_edge_device_down"]  # SecAgg+ messages to devices too
    assert first["bytes_up"] == pytest.approx(6 * (first["link_device_edge_up"] + first["link_codes_once"]))
    assert second["bytes_up"] == pytest.approx(6 * second["link_device_edge_up"])


def test_client_weight_decay_reaches_the_devices(tmp_path):
    engine.run(_spec(run={"rounds": 1, "seed": 3}), RunDir(tmp_path / "a"))
    engine.run(_spec(run={"rounds": 1, "seed": 3}, client={"weight_decay": 0.5}), RunDir(tmp_path / "b"))
    assert _rows(tmp_path / "a")[0]["device_accuracy"] != _rows(tmp_path / "b")[0]["device_accuracy"]
