import numpy as np

from secfl import scenario
from secfl import engine as server
from secfl.runs import RunDir

SMALL = {
    "name": "small",
    "run": {"rounds": 4, "seed": 3, "clients_per_round": 4},
    "data": {"dataset": "digits", "num_clients": 6},
    "model": {"kind": "mlp", "options": {"hidden": 32}},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
    "server": {"lr": 1.0, "momentum": 0.5},
}


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_run_learns_and_writes_every_round(tmp_path):
    spec = scenario.validate(SMALL)
    seen = []
    summary = server.run(spec, RunDir(tmp_path / "a"), on_round=seen.append)
    rows = RunDir(tmp_path / "a").metrics()
    assert [r["round"] for r in rows] == [1, 2, 3, 4] == [r["round"] for r in seen]
    assert rows[-1]["accuracy"] > 0.5 and summary["final_accuracy"] == rows[-1]["accuracy"]
    assert all(r["bytes_up"] > 0 and r["bytes_down"] > 0 and r["clients"] == 4 for r in rows)
    assert (tmp_path / "a" / "summary.json").exists()


def test_same_seed_same_metrics_and_interrupted_run_resumes_exactly(tmp_path, interrupted_run):
    spec = scenario.validate(SMALL)
    server.run(spec, RunDir(tmp_path / "full"))

    interrupted_run(spec, RunDir(tmp_path / "cut"))
    assert without_time(RunDir(tmp_path / "cut").metrics()) == without_time(RunDir(tmp_path / "full").metrics())


def test_secure_pipeline_with_buckets_trains(tmp_path):
    spec = scenario.validate({
        **SMALL,
        "stages": [{"kind": "l2clip", "norm": 5.0}, {"kind": "quantize", "scale": 65536.0}],
        "grouping": {"kind": "buckets", "size": 2},
        "aggregator": {"kind": "median", "num_byzantine": 0},
    })
    server.run(spec, RunDir(tmp_path / "b"))
    rows = RunDir(tmp_path / "b").metrics()
    assert rows[-1]["groups"] == 2 and rows[-1]["accuracy"] > 0.5


def test_pseudo_gradient_is_minus_the_delta():
    import torch

    model = torch.nn.Linear(2, 1)
    server.set_pseudo_gradient(model, np.array([1.0, 2.0, 3.0], np.float32))
    assert torch.equal(model.weight.grad, torch.tensor([[-1.0, -2.0]]))
    assert torch.equal(model.bias.grad, torch.tensor([-3.0]))
