"""``server.optimizer = "adam"`` (FedAdam): Adam on the pseudo-gradient, checkpointed and resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secfl import ConfigurationError, engine, scenario
from secfl.run_setup import RunSetup
from secfl.runs import RunDir

SPEC = {"name": "adam", "run": {"rounds": 3, "seed": 2}, "data": {"dataset": "digits", "num_clients": 4},
        "model": {"kind": "mlp", "options": {"hidden": 8}}, "client": {"lr": 0.1},
        "server": {"optimizer": "adam", "lr": 0.01, "eps": 1e-3}}


def test_the_server_step_is_adams():
    setup = RunSetup(scenario.validate(SPEC))
    assert isinstance(setup.optimizer, torch.optim.Adam)
    group = setup.optimizer.param_groups[0]
    assert group["lr"] == 0.01 and group["eps"] == 1e-3 and tuple(group["betas"]) == (0.9, 0.99)
    before = [p.detach().clone() for p in setup.model.parameters()]
    delta = np.full(sum(p.numel() for p in before), 1e-4, np.float32)
    engine.set_pseudo_gradient(setup.model, delta)
    setup.optimizer.step()
    moved = torch.cat([(p.detach() - b).ravel() for p, b in zip(setup.model.parameters(), before, strict=True)])
    # Adam's first step is lr * g / (|g| + eps) in each coordinate, in the update's direction
    assert torch.allclose(moved, torch.full_like(moved, 0.01 * 1e-4 / (1e-4 + 1e-3)), rtol=1e-3)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_resumed_adam_run_equals_an_uninterrupted_one(tmp_path):
    spec = scenario.validate(SPEC)
    engine.run(spec, RunDir(tmp_path / "full"))
    engine.run(scenario.validate({**SPEC, "run": {"rounds": 2, "seed": 2}}), RunDir(tmp_path / "cut"))
    engine.run(spec, RunDir(tmp_path / "cut"), resume=True)  # Adam's moments come back from the checkpoint
    assert [r["accuracy"] for r in RunDir(tmp_path / "cut").metrics()] == \
        [r["accuracy"] for r in RunDir(tmp_path / "full").metrics()]


@pytest.mark.parametrize("server", [{"optimizer": "adam", "momentum": 0.5}, {"betas": [0.9, 1.0]},
                                    {"optimizer": "rmsprop"}])
def test_bad_server_settings(server):
    with pytest.raises(ConfigurationError):
        scenario.validate({**SPEC, "server": server})
