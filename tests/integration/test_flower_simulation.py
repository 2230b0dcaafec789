"""secfl over Flower's simulation engine gives the embedded engine's run for the same seed, and Flower stays
optional."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from secfl import engine, scenario
from secfl.runs import RunDir

SCENARIO = {
    "name": "flower-equal", "stages": [{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 65536.0}],
    "protocol": {"kind": "secagg+"}, "grouping": {"kind": "one_group"},
    "run": {"rounds": 2, "seed": 4}, "data": {"dataset": "digits", "num_clients": 4},
    "model": {"kind": "mlp", "options": {"hidden": 16}}, "client": {"epochs": 1, "batch_size": 16, "lr": 0.1},
    "server": {"momentum": 0.5},
}


def test_import_secfl_does_not_import_flower_or_ray():
    code = "import sys, secfl, secfl.remote; print('flwr' in sys.modules or 'ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")  # Ray's actors train with one thread: float sums then agree bitwise
def test_a_scenario_over_flower_simulation_equals_the_embedded_run(tmp_path, monkeypatch):
    pytest.importorskip("flwr")
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr"))
    from secfl.integrations.flower import simulate

    spec = scenario.validate(json.loads(json.dumps(SCENARIO)))
    simulate(spec, RunDir(tmp_path / "flower"))
    engine.run(spec, RunDir(tmp_path / "embedded"))
    flower, embedded = RunDir(tmp_path / "flower").metrics(), RunDir(tmp_path / "embedded").metrics()
    assert len(flower) == len(embedded) == 2
    for a, b in zip(flower, embedded, strict=True):
        assert (a["accuracy"], a["loss"], a["train_loss"]) == (b["accuracy"], b["loss"], b["train_loss"])
        assert a["bytes_up"] >= b["bytes_up"]  # the same protocol bytes plus each message's small header
        assert a["bytes_up"] - b["bytes_up"] < 200 * 4 * 8  # < 200 B of framing per client and message


def test_a_scenario_flower_cannot_run_is_refused_with_the_reason():
    pytest.importorskip("flwr")
    from secfl.exceptions import ConfigurationError
    from secfl.integrations.flower.server import check_supported

    data = dict(json.loads(json.dumps(SCENARIO)), method="fedbat", attack={"kind": "sign_flip", "num_byzantine": 1})
    with pytest.raises(ConfigurationError, match="method 'fedbat'.*\\[attack\\]"):
        check_supported(scenario.validate(data))
