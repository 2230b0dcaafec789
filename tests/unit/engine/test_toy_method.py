"""A new method defined in this file alone (its own trainer and one round hook) runs through ``secfl run``.

Nothing in secfl is changed for it: the method is registered (``registry.register("method", ...)``), the
scenario names it and configures it in a table of its name, and the engine takes its trainer and hook.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from pydantic import Field
from typer.testing import CliRunner

from secfl import engine, registry, scenario
from secfl.cli import app
from secfl.fl.params import flatten
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.base import Method, MethodOptions
from secfl.runs import RunDir
from secfl.training import LocalResult, LoopTrainer, Setup, Task


class SignTrainer(LoopTrainer):
    """Local SGD, then send only ``step * sign(delta)`` (a signSGD-like client)."""

    name: ClassVar[str] = "toy_sign"

    def __init__(self, step: float) -> None:
        self.step = step

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        trained = copy.deepcopy(task.model).train()
        optimizer = torch.optim.SGD(trained.parameters(), lr=task.hyper.lr)
        return Setup(trained, optimizer, inputs, targets, task.hyper.batch_size, stream=stream)

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        delta = flatten(setup.extra.get("plain", setup.module)) - flatten(task.model)
        sent = (self.step * np.sign(delta)).astype(np.float32)
        return LocalResult(sent, len(setup.targets), loss, metrics={"toy_nonzero": float(np.count_nonzero(sent))})


class DecayHook(RoundHook):
    """The server scales its step by ``decay ** (round - 1)`` and reports the scale it used."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.calls = 0  # kept in the checkpoint, to show hook state survives a resume

    def server_delta(self, ctx: RoundContext, delta: np.ndarray) -> np.ndarray:
        self.calls += 1
        return delta * self.decay ** (ctx.round - 1)

    def metrics(self, ctx: RoundContext, row: dict[str, Any]) -> None:
        row["toy_scale"] = self.decay ** (ctx.round - 1)
        row["toy_calls"] = self.calls

    def state_dict(self) -> dict[str, int]:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.calls = int(state["calls"])


class ToyOptions(MethodOptions):
    step: float = Field(0.01, gt=0)
    decay: float = Field(1.0, ge=0)


class Toy(Method):
    name: ClassVar[str] = "toy"
    Options: ClassVar[type[ToyOptions]] = ToyOptions

    def trainer(self) -> SignTrainer:
        return SignTrainer(self.options.step)

    def hooks(self) -> list[RoundHook]:
        return [DecayHook(self.options.decay)]


SCENARIO = """
name = "toy"
method = "toy"
[toy]
{options}
[run]
rounds = {rounds}
seed = 3
[data]
dataset = "digits"
num_clients = 4
[model]
kind = "logreg"
[client]
epochs = 1
batch_size = 16
lr = 0.1
"""


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    monkeypatch.setitem(registry.METHODS, "toy", Toy)


def _run(tmp_path: Path, options: str, *extra: str, rounds: int = 2, out: str = "run") -> tuple[Any, Path]:
    path = tmp_path / "toy.toml"
    path.write_text(SCENARIO.format(options=options, rounds=rounds))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / out), *extra])
    return result, tmp_path / out


def _rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_toy_method_runs_through_secfl_run_with_its_trainer_and_hook(tmp_path):
    result, run_dir = _run(tmp_path, "step = 0.01\ndecay = 0.0")
    assert result.exit_code == 0, result.output
    rows = _rows(run_dir)
    assert [r["toy_scale"] for r in rows] == [1.0, 0.0]  # the hook ran every round
    d = json.loads((run_dir / "summary.json").read_text())["num_params"]
    assert rows[0]["toy_nonzero"] == pytest.approx(d, rel=0.2)  # the trainer sent signs: (almost) all non-zero
    # decay 0 -> the second round's server step is zero, so the model (and its test metrics) did not move
    assert rows[1]["accuracy"] == rows[0]["accuracy"] and rows[1]["loss"] == rows[0]["loss"]
    config = tomllib.loads((run_dir / "config.toml").read_text())
    assert config["method"] == "toy" and config["options"] == {"step": 0.01, "decay": 0.0}


def test_the_toy_methods_step_really_reaches_the_model(tmp_path):
    moving, _ = _run(tmp_path, "step = 0.01\ndecay = 1.0", out="moving")
    assert moving.exit_code == 0, moving.output
    rows = _rows(tmp_path / "moving")
    assert rows[1]["loss"] != rows[0]["loss"]  # decay 1: the second step moves the model


def test_dp_sgd_wraps_the_toy_trainer(tmp_path):
    result, run_dir = _run(tmp_path, "step = 0.01", "--set", "client.dp_sgd.noise_multiplier=1.0",
                           "--set", "client.dp_sgd.max_grad_norm=1.0")
    assert result.exit_code == 0, result.output
    rows = _rows(run_dir)
    assert all(np.isfinite(r["client_epsilon"]) and r["client_epsilon"] > 0 for r in rows)
    assert rows[1]["client_epsilon"] > rows[0]["client_epsilon"]  # the accountant continued across rounds


def test_the_toy_hook_state_survives_a_resume(tmp_path):
    path = tmp_path / "toy.toml"
    path.write_text(SCENARIO.format(options="decay = 0.5", rounds=3))
    spec = scenario.load(path)

    def stop_after_first(row: dict[str, Any]) -> None:
        if row["round"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine.run(spec, RunDir(tmp_path / "run"), on_round=stop_after_first)
    engine.run(spec, RunDir(tmp_path / "run"), resume=True)
    assert [r["toy_calls"] for r in _rows(tmp_path / "run")] == [1, 2, 3]  # the hook's count came back


def test_a_misspelled_toy_option_is_named(tmp_path):
    result, _ = _run(tmp_path, "stpe = 0.01")
    assert result.exit_code == 2
    assert "toy.stpe" in result.output and "Extra inputs" in result.output


def test_secfl_list_shows_the_registered_method():
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0 and "toy" in result.output.splitlines()[0]


def test_canaries_are_refused_with_a_transport_that_would_skip_them(tmp_path):
    from secfl import engine, scenario
    from secfl.exceptions import ConfigurationError
    from secfl.runs import RunDir

    spec = scenario.validate({"data": {"dataset": "digits", "num_clients": 4}, "run": {"rounds": 1}})
    with pytest.raises(ConfigurationError, match="canaries"):
        engine.run(spec, RunDir(tmp_path / "r"), fixed_updates={0: np.zeros(3)}, transport=engine.embedded)
