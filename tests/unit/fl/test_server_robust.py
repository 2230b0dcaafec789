import json

import numpy as np
import pytest

from secfl import scenario
from secfl.aggregators import Chain, FLTrust, NearestNeighborMixing, StaticClip, TrimmedMean
from secfl.exceptions import ConfigurationError
from secfl import engine as server
from secfl.runs import RunDir

BASE = {
    "name": "robust",
    "run": {"rounds": 3, "seed": 2, "clients_per_round": 9},
    "data": {"dataset": "digits", "num_clients": 9},
    "model": {"kind": "logreg"},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}


def with_(**changes):
    return {**json.loads(json.dumps(BASE)), **changes}


def test_scenario_builds_a_chain_from_pre_and_the_rule():
    spec = scenario.validate(with_(aggregator={"kind": "trimmed_mean", "num_byzantine": 2},
                                   pre=[{"kind": "static_clip", "norm": 2.0}, {"kind": "nnm", "num_byzantine": 2}]))
    rule = spec.build_pipeline().aggregator
    assert isinstance(rule, Chain) and isinstance(rule.rule, TrimmedMean)
    assert [type(p) for p in rule.pre] == [StaticClip, NearestNeighborMixing]
    with pytest.raises(ConfigurationError, match="pre\\[0\\].*unknown kind 'krum'"):
        scenario.validate(with_(pre=[{"kind": "krum"}]))


def test_bucketed_secure_robust_run_learns(tmp_path):
    spec = scenario.validate(with_(stages=[{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 65536.0}],
                                   protocol={"kind": "secagg+"}, grouping={"kind": "buckets", "size": 3},
                                   aggregator={"kind": "trimmed_mean", "num_byzantine": 1}))
    summary = server.run(spec, RunDir(tmp_path / "a"))
    rows = RunDir(tmp_path / "a").metrics()
    assert all(r["groups"] == 3 for r in rows) and summary["final_accuracy"] > 0.5


def test_fltrust_gets_a_fresh_server_reference_every_round(tmp_path):
    spec = scenario.validate(with_(aggregator={"kind": "fltrust", "root_size": 50}))
    seen = []
    original = FLTrust.__call__

    def spy(self, vectors, **kwargs):
        seen.append(np.array(kwargs["reference"]))
        return original(self, vectors, **kwargs)

    FLTrust.__call__ = spy
    try:
        summary = server.run(spec, RunDir(tmp_path / "a"))
    finally:
        FLTrust.__call__ = original
    assert len(seen) == 3 and not np.allclose(seen[0], seen[1])
    assert summary["final_accuracy"] > 0.5


@pytest.mark.parametrize("mode", ["paper", "secure"])
def test_ewwa_runs_through_the_engine(tmp_path, mode):
    if mode == "paper":
        spec = with_(aggregator={"kind": "ewwa"})
    else:
        spec = with_(stages=[{"kind": "l2clip", "norm": 5.0}, {"kind": "ewwa", "bound": 3.0},
                             {"kind": "quantize", "scale": 2.0**20}],
                     protocol={"kind": "secagg+"}, grouping={"kind": "one_group"},
                     aggregator={"kind": "ewwa", "mode": "secure"})
    summary = server.run(scenario.validate(spec), RunDir(tmp_path / mode))
    assert summary["final_accuracy"] > 0.5
    with pytest.raises(ConfigurationError, match="[Ee]wwa"):
        scenario.validate(with_(aggregator={"kind": "ewwa", "mode": "secure"}))
