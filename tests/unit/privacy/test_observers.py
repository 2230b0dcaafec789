"""Two observers, two epsilons: the released models (sampling secret, amplified) and the aggregation server
(knows who took part: each client's own rounds compose bare). And distributed noise over Plaintext is refused
unless the noise stage says trust = "simulation"."""

import json
import math

import dp_accounting
import numpy as np
import pytest

from secfl import (Buckets, DistributedDiscreteGaussian, GaussianNoise, Individual, L2Clip, OneGroup, Pipeline,
                   Quantize, SecAggPlus, Update, scenario)
from secfl.audit.privacy.report import write_privacy_report
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl import engine as server
from secfl.privacy import Accountant, Ledger
from secfl.privacy.ledger import MAX_EXACT
from secfl.runs import RunDir
from secfl.types import DropoutSchedule

G1 = dp_accounting.GaussianDpEvent(1.0)


def test_the_issue_numbers_z1_q01_100_rounds_at_the_default_delta():
    delta = scenario.PrivacySection().delta
    assert delta == 1e-5
    ledger = Ledger(Accountant("pld"), sample_rate=0.1, delta=delta)
    for r in range(100):  # client 7 takes part in the expected q * T = 10 rounds, client 3 in 4
        ledger.record(G1, participants=[7] if r % 10 == 0 else [3] if r % 25 == 1 else [])
    assert ledger.epsilon() == pytest.approx(7.05, abs=0.01)  # against the released models
    assert ledger.epsilon_server() == pytest.approx(17.9, abs=0.05)  # against the server (17.86)
    assert ledger.server_rounds == 10
    assert ledger.epsilon_server() == pytest.approx(Accountant("pld").epsilon_of([(G1, 10)], sample_rate=1.0,
                                                                                 delta=delta))
    assert "epsilon_server=17.8" in repr(ledger)


def test_server_epsilon_is_the_most_exposed_clients_and_never_amplified():
    acc = Accountant("rdp")
    ledger = Ledger(acc, sample_rate=0.01, delta=1e-5)
    assert ledger.epsilon_server() == 0.0 and ledger.server_rounds == 0
    weak = dp_accounting.GaussianDpEvent(0.5)
    ledger.record(G1, participants=[0, 1])
    ledger.record(G1, participants=[0, 0])  # a repeated id counts once
    ledger.record(weak, participants=np.array([1]))  # numpy ids are ids
    ledger.record(G1)  # participants unknown: charged to everyone
    rounds = {0: [(G1, 3)], 1: [(G1, 2), (weak, 1)]}
    each = {c: acc.epsilon_of(h, sample_rate=1.0, delta=1e-5) for c, h in rounds.items()}
    assert ledger.epsilon_server() == pytest.approx(max(each.values()))
    assert ledger.server_rounds == 3
    assert ledger.epsilon_server() > ledger.epsilon()
    for bad in ("01", [1.5], [True], [2, None]):
        with pytest.raises(ConfigurationError, match="participant"):
            ledger.record(G1, participants=bad)
    assert ledger.rounds == 4 and ledger.server_rounds == 3  # a refused round records nothing


def test_many_incomparable_histories_are_bounded_by_their_pointwise_maximum():
    acc = Accountant("rdp")
    ledger = Ledger(acc, sample_rate=0.5, delta=1e-5)
    events = [dp_accounting.GaussianDpEvent(1.0 + i / 10) for i in range(MAX_EXACT + 2)]
    for cid, event in enumerate(events):  # client i alone meets event i: no history contains another
        ledger.record(event, participants=[cid])
    exact = max(acc.epsilon_of([(e, 1)], sample_rate=1.0, delta=1e-5) for e in events)
    bound = acc.epsilon_of([(e, 1) for e in events], sample_rate=1.0, delta=1e-5)
    assert exact < ledger.epsilon_server() == pytest.approx(bound)


def test_without_replacement_prices_the_server_in_replace_one_units():
    acc = Accountant("rdp", "without_replacement")
    ledger = Ledger(acc, sample_rate=0.5, delta=1e-5)
    ledger.record(G1, participants=[0])
    alone = Accountant("rdp").epsilon_of([(dp_accounting.GaussianDpEvent(0.5), 1)], sample_rate=1.0, delta=1e-5)
    assert ledger.epsilon_server() == pytest.approx(alone)  # z / 2: a replaced client moves the sum by 2C


def _noise_pipeline(placement, protocol=None, grouping=None, n=6, **noise):
    stages = [L2Clip(1.0), GaussianNoise(1.0, placement=placement, secure=False, **noise), Quantize(scale=2**12)]
    return Pipeline(clients_per_round=n, stages=stages, protocol=protocol, grouping=grouping or OneGroup())


def test_the_server_sees_the_noise_that_survived_inside_a_secure_sum_and_none_with_central_noise(rng):
    distributed = _noise_pipeline("distributed", SecAggPlus())
    assert distributed.server_dp_event(4, 6) == distributed.dp_event(4, 6) == dp_accounting.GaussianDpEvent(
        math.sqrt(4 / 6))
    ups = [Update(i, rng.normal(size=50).astype(np.float32)) for i in range(6)]
    out = distributed.run_round(ups, rng=rng, dropouts=DropoutSchedule({2: "masked_input"}))
    c, m = int(out.measurements["dp/contributors"]), int(out.measurements["dp/shares"])
    assert (c, m) == (5, 6) and distributed.server_dp_event(c, m) == out.dp_event
    central = _noise_pipeline("central")
    assert central.dp_event() == G1
    assert isinstance(central.server_dp_event(), dp_accounting.NonPrivateDpEvent)  # it saw the sum first
    client = _noise_pipeline("client")
    assert client.server_dp_event() == client.dp_event() == G1
    simulated = _noise_pipeline("distributed", trust="simulation")  # plaintext: the server sees one share
    assert simulated.dp_event() == G1
    assert simulated.server_dp_event(6, 6) == dp_accounting.GaussianDpEvent(math.sqrt(1 / 6))
    assert _noise_pipeline("distributed", grouping=Individual()).server_dp_event() == G1  # groups of one


def test_distributed_noise_over_plaintext_is_refused_unless_trust_simulation():
    with pytest.raises(IncompatibleStagesError, match=r"secagg\+.*trust = \"simulation\""):
        _noise_pipeline("distributed")
    with pytest.raises(IncompatibleStagesError, match="Plaintext"):
        _noise_pipeline("distributed", grouping=Buckets(size=3))
    with pytest.raises(IncompatibleStagesError, match="trust"):
        Pipeline(clients_per_round=4, stages=[DistributedDiscreteGaussian(1.0, 1.0, 16)], grouping=OneGroup())
    Pipeline(clients_per_round=4, stages=[DistributedDiscreteGaussian(1.0, 1.0, 16, trust="simulation")],
             grouping=OneGroup())
    _noise_pipeline("distributed", trust="simulation")
    _noise_pipeline("distributed", SecAggPlus())
    _noise_pipeline("distributed", grouping=Individual())  # each client adds all the noise: nothing to refuse
    _noise_pipeline("central")
    _noise_pipeline("client")
    with pytest.raises(ConfigurationError, match="choose one of"):
        GaussianNoise(1.0, trust="server")
    with pytest.raises(ConfigurationError, match="distributed"):
        GaussianNoise(1.0, placement="central", trust="simulation")
    with pytest.raises(ConfigurationError, match="choose one of"):
        DistributedDiscreteGaussian(1.0, 1.0, 16, trust=None)
    assert "trust='simulation'" in repr(GaussianNoise(1.0, trust="simulation"))


SPEC = {
    "name": "observers",
    "stages": [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 1.0},
               {"kind": "quantize", "scale": 1024.0}],
    "protocol": {"kind": "secagg+"},
    "grouping": {"kind": "one_group"},
    "run": {"rounds": 4, "seed": 1, "clients_per_round": 4, "sampling": "poisson"},
    "data": {"dataset": "digits", "num_clients": 8},
    "model": {"kind": "logreg"},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}


def test_the_scenario_toml_passes_trust_to_the_noise_stage():
    plain = {**SPEC, "protocol": {"kind": "plaintext"}}
    with pytest.raises(ConfigurationError, match="trust"):
        scenario.validate(plain)
    stages = [dict(s) for s in SPEC["stages"]]
    stages[1]["trust"] = "simulation"
    spec = scenario.validate({**plain, "stages": stages})
    assert spec.build_pipeline().stages[1].trust == "simulation"
    stages[1]["trust"] = "yes"
    with pytest.raises(ConfigurationError, match="trust"):
        scenario.validate({**plain, "stages": stages})


def _participation(spec, rounds):
    taken = {}
    for r in range(1, rounds + 1):
        for c in server.sample_clients(spec, np.random.default_rng([spec.run.seed, 2, r])):
            taken[c] = taken.get(c, 0) + 1
    return max(taken.values())


def test_metrics_and_summary_carry_both_epsilons_and_a_resume_rebuilds_them(tmp_path, interrupted_run):
    spec = scenario.validate(SPEC)
    summary = server.run(spec, RunDir(tmp_path / "full"))
    rows = RunDir(tmp_path / "full").metrics()
    for r, row in enumerate(rows, 1):
        most = _participation(spec, r)
        assert row["epsilon_server_rounds"] == most
        assert row["epsilon_server"] == pytest.approx(
            Accountant("pld").epsilon(noise_multiplier=1.0, sample_rate=1.0, rounds=most, delta=1e-5), rel=1e-6)
        assert row["epsilon_server"] > row["epsilon"] == pytest.approx(
            Accountant("pld").epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=r, delta=1e-5), rel=1e-6)
    stored = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert stored["epsilon_server"] == summary["epsilon_server"] == rows[-1]["epsilon_server"]
    assert stored["epsilon_server_rounds"] == rows[-1]["epsilon_server_rounds"]

    interrupted_run(spec, RunDir(tmp_path / "cut"))
    cut = RunDir(tmp_path / "cut").metrics()
    assert [r["epsilon_server"] for r in cut] == pytest.approx([r["epsilon_server"] for r in rows], rel=1e-9)


def test_central_noise_is_no_protection_against_the_server(tmp_path):
    stages = [dict(s) for s in SPEC["stages"][:2]]
    stages[1]["placement"] = "central"
    spec = scenario.validate({**SPEC, "stages": stages, "protocol": {"kind": "plaintext"},
                              "run": {**SPEC["run"], "rounds": 2}})
    summary = server.run(spec, RunDir(tmp_path / "a"))
    assert all(math.isinf(r["epsilon_server"]) and math.isfinite(r["epsilon"])
               for r in RunDir(tmp_path / "a").metrics())
    assert math.isinf(summary["epsilon_server"])


def test_the_audit_report_shows_the_servers_epsilon_beside_the_claim(tmp_path):
    base = {"defense": "x", "accuracy": 0.5, "inversion": {"skipped": "no"}, "membership": {"skipped": "no"},
            "audit": {"skipped": "canaries = 0"}}
    results = [{**base, "name": "dist", "epsilon_claimed": 7.05, "epsilon_server": 17.86, "epsilon_server_rounds": 10},
               {**base, "name": "central", "epsilon_claimed": 1.0, "epsilon_server": math.inf},
               {**base, "name": "none", "epsilon_claimed": None, "epsilon_server": None}]
    text = write_privacy_report(results, tmp_path).read_text().split("## Epsilon")[1].split("## Attacks")[0]
    assert "| vs the server |" in text and "knows who took part" in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 7.05 | 17.86 (10 rounds taken part) |" in rows["dist"]
    assert "inf (it sees the un-noised sum)" in rows["central"]
    assert "| none | none |" in rows["none"]
    header = next(line for line in text.splitlines() if line.startswith("| scenario"))
    assert all(line.count(" | ") == header.count(" | ") for line in rows.values())
