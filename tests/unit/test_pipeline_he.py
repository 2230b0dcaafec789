import json

import numpy as np
import pytest

from secfl import scenario
from secfl.exceptions import IncompatibleStagesError
from secfl import engine as server
from secfl.grouping import Buckets, OneGroup
from secfl.pipeline import Pipeline
from secfl.protocols import HeSum
from secfl.runs import RunDir
from secfl.stages import L2Clip, Quantize
from secfl.types import Update


def updates(rng, n=7, d=3000):
    return [Update(i, (rng.normal(size=d) * 0.02).astype(np.float32), weight=1.0 + i) for i in range(n)]


def test_bfv_pipeline_equals_the_plaintext_pipeline_exactly(rng):
    ups = updates(rng)
    stages = [L2Clip(1.0), Quantize(scale=2.0**24)]

    def run(**kwargs):
        pipeline = Pipeline(clients_per_round=7, stages=stages, grouping=Buckets(4), **kwargs)
        return pipeline.run_round(ups, rng=np.random.default_rng(3))

    he, clear = run(protocol=HeSum()), run()
    assert he.result.view.protocol == "he" and he.measurements["he/bytes_up"] > 16 * 3000 * 7
    assert np.array_equal(he.group_means, clear.group_means)
    assert np.array_equal(he.aggregate, clear.aggregate)


def test_ckks_pipeline_is_within_the_stated_tolerance(rng):
    ups = updates(rng, n=5)
    he = Pipeline(clients_per_round=5, stages=[L2Clip(1.0)], protocol=HeSum(scheme="ckks"), grouping=OneGroup())
    clear = Pipeline(clients_per_round=5, stages=[L2Clip(1.0)], grouping=OneGroup())
    got, want = he.run_round(ups, rng=rng), clear.run_round(ups, rng=rng)
    tolerance = HeSum(scheme="ckks").params(5).tolerance
    assert np.max(np.abs(got.result.sums - want.result.sums)) <= tolerance


def test_schemes_refuse_the_wrong_input_kind():
    with pytest.raises(IncompatibleStagesError, match="Quantize"):
        Pipeline(clients_per_round=3, stages=[L2Clip(1.0)], protocol=HeSum(), grouping=OneGroup())
    with pytest.raises(IncompatibleStagesError, match="real"):
        Pipeline(clients_per_round=3, stages=[L2Clip(1.0), Quantize()], protocol=HeSum(scheme="ckks"),
                 grouping=OneGroup())


@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
def test_he_scenario_runs_through_the_engine(tmp_path, scheme):
    stages = [{"kind": "l2clip", "norm": 5.0}] + ([{"kind": "quantize", "scale": 2.0**20}] if scheme == "bfv" else [])
    spec = scenario.validate({
        "name": f"he-{scheme}", "stages": stages, "protocol": {"kind": "he", "scheme": scheme},
        "grouping": {"kind": "one_group"}, "run": {"rounds": 2, "seed": 1, "clients_per_round": 4},
        "data": {"dataset": "digits", "num_clients": 4}, "model": {"kind": "logreg"},
        "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
    })
    summary = server.run(spec, RunDir(tmp_path / scheme))
    rows = RunDir(tmp_path / scheme).metrics()
    assert summary["final_accuracy"] > 0.4 and all(r["bytes_up"] > 0 for r in rows)
    assert json.loads((tmp_path / scheme / "summary.json").read_text())["rounds"] == 2
