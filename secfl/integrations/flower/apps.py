"""secfl's own Flower apps (importable, as Flower needs): ``client_app`` trains exactly like the embedded
engine (the scenario's trainer, data partition and per-round seeds) behind ``secfl_mod``; ``server_app`` runs
``serve`` (its run config names the scenario). ``secfl run --engine flower`` and ``secfl new flower-app`` use
them."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from secfl import scenario as scenarios
from secfl.engine import client_seed
from secfl.integrations.flower.node import SIMULATION_ENV, STATE, client_id, secfl_mod, secure
from secfl.integrations.flower.server import serve
from secfl.run_setup import RunSetup
from secfl.training import Task

__all__ = ["client_app", "server_app"]

client_app = secure(ClientApp(mods=[secfl_mod]))
server_app = ServerApp()


@functools.lru_cache(maxsize=2)
def _setup(text: str) -> RunSetup:
    """The scenario's data, partition, model and trainer, built as the embedded engine builds them."""
    return RunSetup(scenarios.validate(json.loads(text)))


@client_app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training of client ``partition-id`` on its shard of the scenario's data."""
    if os.environ.get(SIMULATION_ENV) == "1":  # one CPU per simulated client: one torch thread (and sums that
        torch.set_num_threads(1)                 # do not depend on the machine's cores)
    setup = _setup(str(context.state.config_records[STATE]["scenario"]))
    cid, round_ = client_id(context), int(msg.content["config"]["server-round"])
    model = setup.model
    with torch.no_grad():
        for param, array in zip(model.parameters(), msg.content["arrays"].to_numpy_ndarrays(), strict=True):
            param.copy_(torch.from_numpy(array))
    idx = setup.shards[cid]
    task = Task(model, setup.data.x_train[idx], setup.data.y_train[idx], client_seed(setup.seed, round_, cid),
                setup.hyper, client_id=cid, round=round_)
    result = setup.trainer.train(task)
    metrics: dict[str, Any] = {"num-examples": int(result.num_examples), "loss": float(result.loss),
                               "loss-examples": int(result.loss_examples or result.num_examples)}
    return Message(RecordDict({"update": ArrayRecord(numpy_ndarrays=[result.delta]), "metrics": MetricRecord(metrics)}),
                   reply_to=msg)


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    serve(grid, context)
