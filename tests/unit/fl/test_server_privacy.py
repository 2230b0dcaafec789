import json

import pytest

from secfl import scenario
from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError
from secfl import engine as server
from secfl.privacy import Accountant
from secfl.runs import RunDir

DP = {
    "name": "dp",
    "stages": [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 1.0},
               {"kind": "quantize", "scale": 1024.0}],
    "protocol": {"kind": "secagg+"},
    "grouping": {"kind": "one_group"},
    "run": {"rounds": 3, "seed": 1, "clients_per_round": 4, "sampling": "poisson"},
    "data": {"dataset": "digits", "num_clients": 8},
    "model": {"kind": "logreg"},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}


def with_(base, **sections):
    out = json.loads(json.dumps(base))
    for key, value in sections.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def test_epsilon_after_every_round_matches_the_accountant(tmp_path):
    spec = scenario.validate(DP)
    summary = server.run(spec, RunDir(tmp_path / "a"))
    rows = RunDir(tmp_path / "a").metrics()
    expected = [Accountant("pld").epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=r, delta=1e-5)
                for r in (1, 2, 3)]
    assert [r["epsilon"] for r in rows] == pytest.approx(expected, rel=1e-6)
    assert summary["epsilon"] == rows[-1]["epsilon"] and "pld" in summary["accountant"]
    assert {r["clients"] for r in rows} != {4} or all(r["noise_multiplier"] > 0 for r in rows)


def test_fixed_sampling_is_accounted_without_replacement_in_rdp(tmp_path):
    spec = scenario.validate(with_(DP, run={"sampling": "fixed"}))
    server.run(spec, RunDir(tmp_path / "a"))
    rows = RunDir(tmp_path / "a").metrics()
    assert all(r["clients"] == 4 for r in rows)
    assert rows[-1]["epsilon"] == pytest.approx(Accountant("rdp", "without_replacement").epsilon(
        noise_multiplier=1.0, sample_rate=0.5, rounds=3, delta=1e-5))
    with pytest.raises(ConfigurationError, match="PLD"):
        scenario.validate(with_(DP, run={"sampling": "fixed"}, privacy={"accountant": "pld"}))


def test_target_epsilon_solves_the_noise_before_training(tmp_path):
    stages = [dict(s) for s in DP["stages"]]
    del stages[1]["noise_multiplier"]
    spec = scenario.validate(with_(DP, stages=stages, privacy={"target_epsilon": 4.0}))
    z = spec.stages[1]["noise_multiplier"]
    assert 0.3 < z < 3
    summary = server.run(spec, RunDir(tmp_path / "a"))
    assert 0.99 * 4.0 <= summary["epsilon"] <= 4.0
    resolved = (tmp_path / "a" / "config.toml").read_text()
    assert "noise_multiplier" in resolved and "target_epsilon" in resolved
    with pytest.raises(ConfigurationError, match="give only one"):
        scenario.validate(with_(DP, privacy={"target_epsilon": 0.5}))
    with pytest.raises(ConfigurationError, match="noise stage"):
        scenario.validate(with_(DP, stages=[], protocol={"kind": "plaintext"}, privacy={"target_epsilon": 1.0}))


def test_budget_stops_the_run_cleanly_with_everything_saved(tmp_path):
    spec = scenario.validate(with_(DP, run={"rounds": 10}, privacy={"budget": 5.0}))
    seen = []
    with pytest.raises(PrivacyBudgetExceededError, match="budget 5"):
        server.run(spec, RunDir(tmp_path / "a"), on_round=seen.append)
    rows = RunDir(tmp_path / "a").metrics()
    assert 1 <= len(rows) < 10 and len(seen) == len(rows) and rows[-1]["epsilon"] <= 5.0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert "budget" in summary["stopped"] and summary["rounds"] == len(rows)


def test_resumed_run_rebuilds_the_ledger_from_its_metrics(tmp_path, interrupted_run):
    spec = scenario.validate(with_(DP, run={"rounds": 4}))
    server.run(spec, RunDir(tmp_path / "full"))

    interrupted_run(spec, RunDir(tmp_path / "cut"))
    full, cut = RunDir(tmp_path / "full").metrics(), RunDir(tmp_path / "cut").metrics()
    assert [r["epsilon"] for r in cut] == pytest.approx([r["epsilon"] for r in full], rel=1e-9)


def test_distributed_discrete_gaussian_runs_through_the_engine(tmp_path):
    stages = [{"kind": "ddgauss", "noise_multiplier": 1.0, "clip": 1.0, "bits": 18}]
    spec = scenario.validate(with_(DP, stages=stages))
    pipeline = spec.build_pipeline()
    assert pipeline.stages[0].dim == spec.model_dim() == 64 * 10 + 10
    server.run(spec, RunDir(tmp_path / "a"))
    rows = RunDir(tmp_path / "a").metrics()
    assert len(rows) == 3 and rows[-1]["epsilon"] > rows[0]["epsilon"] > 0
    assert "rdp" in json.loads((tmp_path / "a" / "summary.json").read_text())["accountant"]
    with pytest.raises(ConfigurationError, match="RDP only"):
        scenario.validate(with_(DP, stages=stages, privacy={"accountant": "pld"}))


def test_dp_sgd_clients_report_their_epsilon_and_it_survives_a_resume(tmp_path, interrupted_run):
    spec = scenario.validate(with_(DP, stages=[], protocol={"kind": "plaintext"}, run={"rounds": 3, "sampling": "fixed"},
                                   client={"dp_sgd": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}))
    server.run(spec, RunDir(tmp_path / "full"))
    full = RunDir(tmp_path / "full").metrics()
    assert all("epsilon" not in r for r in full)  # no client-level noise: no client-level claim
    eps = [r["client_epsilon"] for r in full]
    assert 0 < eps[0] <= eps[1] <= eps[2] < 100

    interrupted_run(spec, RunDir(tmp_path / "cut"))
    assert [r["client_epsilon"] for r in RunDir(tmp_path / "cut").metrics()] == pytest.approx(eps)


def test_poisson_rounds_too_small_for_the_protocol_release_nothing_but_are_accounted(tmp_path):
    spec = scenario.validate(with_(DP, run={"rounds": 4, "clients_per_round": 2}))  # q = 0.25 of 8; SecAgg+ needs 3
    server.run(spec, RunDir(tmp_path / "a"))
    rows = RunDir(tmp_path / "a").metrics()
    skipped = [r for r in rows if r["clients"] < 3]
    assert skipped and all(r["groups"] == 0 and r["bytes_up"] == 0 for r in skipped)
    eps = [r["epsilon"] for r in rows]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(
        Accountant("pld").epsilon(noise_multiplier=1.0, sample_rate=0.25, rounds=4, delta=1e-5))
