"""``secfl new flower-app DIR``: write a ready Flower app that uses secfl (plain-text templates, no network).

The app: ``pyproject.toml`` (``[tool.flwr.app]``: components in ``<package>/``, run config ``scenario``,
``out``, ``timeout`` and the local training's ``local-epochs`` / ``lr``), ``<package>/client_app.py`` (your own
PyTorch model and training inside ``secure(ClientApp(mods=[secfl_mod]))``: the mod withholds the update, which
reaches the server only inside the secure sum), ``<package>/server_app.py`` (a ``ServerApp`` whose main calls
``serve``), ``scenario.toml`` (SecAgg+ over 5 clients on scikit-learn's digits, 3 rounds) and a README.

The templates are plain text with ``{name}``-style fields (``str.format``; literal braces doubled).
"""

from __future__ import annotations

import importlib.util
import keyword
import re
import sys
from pathlib import Path

from secfl.exceptions import ConfigurationError

__all__ = ["write_flower_app", "check_name", "FILES"]

#: A Flower app name (``[project].name``, as ``flwr`` checks it, ASCII only) and a publisher.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}")
PUBLISHER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

PYPROJECT = '''\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{name}"
version = "1.0.0"
description = "A Flower app whose updates are summed by secfl's SecAgg+ (the server never sees one)"
requires-python = ">=3.11"
dependencies = ["secfl[flower]"]

[tool.hatch.build.targets.wheel]
packages = ["{package}"]

[tool.flwr.app]
publisher = "{publisher}"

[tool.flwr.app.components]
serverapp = "{package}.server_app:app"
clientapp = "{package}.client_app:app"

# The run config (override with: flwr run . <superlink> --run-config "timeout=30 out='runs/x'").
[tool.flwr.app.config]
scenario = "scenario.toml"  # the secfl scenario the server runs (relative: a file of this app)
out = "runs/{name}"  # the run directory (relative: to the working directory of the SuperLink)
timeout = 120.0  # seconds each protocol stage waits for the nodes; a node that misses it is a dropout
local-epochs = 1  # your local training (client_app.py)
lr = 0.05
'''

CLIENT_APP = '''\
"""{name}: the ClientApp. Your own PyTorch model and training; secfl's secure aggregation around them.

``secfl_mod`` keeps the update on the node: ``train`` below replies as any Flower app does (its new weights
as ``ArrayRecord "arrays"``, ``MetricRecord "metrics"`` with ``num-examples``); the mod turns the weights
into the update, withholds it and forwards only the metrics. The update then leaves the node only masked,
inside the SecAgg+ sum the server runs with the protocol queries that ``secure`` registers.

The node's client id is its node config ``partition-id`` (``flower-supernode --node-config
"partition-id=0"``; the simulation sets it).
"""

from __future__ import annotations

import functools
import json

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from secfl import scenario as scenarios
from secfl.integrations.flower import secfl_mod, secure
from secfl.integrations.flower.node import STATE, client_id
from secfl.run_setup import RunSetup

app = secure(ClientApp(mods=[secfl_mod]))


class Net(nn.Module):
    """Your model. The server holds the global model of the scenario's [model] (here mlp with hidden = 64 on
    8x8 digits): this one must have the same parameters, in the same order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@functools.lru_cache(maxsize=1)
def _demo_setup(scenario_json: str) -> RunSetup:
    return RunSetup(scenarios.validate(json.loads(scenario_json)))


def load_data(context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's own training examples: replace with your data (it never leaves the node).

    The demo takes the node's shard (its partition-id) of the scenario's dataset, split as secfl splits it,
    so the test set the server evaluates on stays held out. The scenario is the one the server sent this
    node when it enrolled."""
    setup = _demo_setup(str(context.state.config_records[STATE]["scenario"]))
    shard = setup.shards[client_id(context)]
    return torch.from_numpy(setup.data.x_train[shard]), torch.from_numpy(setup.data.y_train[shard])


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training from the global model the server sent."""
    model = Net()
    with torch.no_grad():
        for param, array in zip(model.parameters(), msg.content["arrays"].to_numpy_ndarrays(), strict=True):
            param.copy_(torch.tensor(array))
    x, y = load_data(context)
    epochs, lr = int(context.run_config["local-epochs"]), float(context.run_config["lr"])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    total, seen = 0.0, 0
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(32):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total, seen = total + loss.item() * len(batch), seen + len(batch)
    arrays = ArrayRecord(numpy_ndarrays=[p.detach().numpy() for p in model.parameters()])
    metrics = MetricRecord({{"num-examples": len(x), "loss": total / max(seen, 1)}})
    return Message(RecordDict({{"arrays": arrays, "metrics": metrics}}), reply_to=msg)
'''

SERVER_APP = '''\
"""{name}: the ServerApp. secfl's ``serve`` runs the scenario: it enrolls the nodes, sends the model, drives
the secure sum's stages through the Grid and writes the run directory (``metrics.jsonl`` per round)."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from secfl.integrations.flower import serve

app = ServerApp()
HERE = Path(__file__).resolve().parent.parent  # the app's directory (where scenario.toml ships)


@app.main()
def main(grid: Grid, context: Context) -> None:
    scenario = str(context.run_config["scenario"])
    if not scenario.lstrip().startswith("{{") and not Path(scenario).is_absolute():
        context.run_config["scenario"] = str(HERE / scenario)  # a relative path names a file of this app
    serve(grid, context)
'''

SCENARIO = '''\
# {name}: the secfl scenario the ServerApp runs. FedAvg on scikit-learn's 8x8 digits over 5 clients (one
# SuperNode each, partition-id 0..4), every round's updates summed by SecAgg+: the server learns only the
# sum. SecAgg+ tolerates dropouts while its threshold of each client's neighbours remains; a round needs
# at least 3 clients. The clients train with client_app.py; the model here must be the one client_app.py
# builds. Each client weighs itself min(num-examples, weight_cap) / weight_cap inside its masked vector (the
# server never sees or chooses a weight): weight_cap is a public bound on a client's example count.
name = "{name}"
stages = [{{ kind = "l2clip", norm = 2.0 }}, {{ kind = "quantize", scale = 65536.0 }}]
protocol = {{ kind = "secagg+" }}
grouping = {{ kind = "one_group" }}
aggregator = {{ kind = "mean" }}

[run]
rounds = 3
seed = 0

[data]
dataset = "digits"
num_clients = 5
partition = {{ kind = "iid" }}

[model]
kind = "mlp"
options = {{ hidden = 64 }}

[client]
weight_cap = 300.0

[server]
lr = 1.0
'''

README = '''\
# {name}

A Flower app whose model updates are summed by secfl's SecAgg+: the server never sees one. Written by
`secfl new flower-app`.

- `{package}/client_app.py`: your model and training (`Net`, `load_data`, `train`) inside
  `secure(ClientApp(mods=[secfl_mod]))`.
- `{package}/server_app.py`: the ServerApp (`serve` runs `scenario.toml`).
- `scenario.toml`: rounds, clients, the secure sum, the model the server keeps.

Simulation (5 SuperNodes, one per client; the variable makes Flower run the app in the environment where
secfl is installed instead of installing its dependencies):

    FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run . local --stream --federation-config "num-supernodes=5"

Deployment: a SuperLink, one SuperNode per client (`--node-config "partition-id=N"`, N = 0..4, each its
own `--port`; `secfl-scenario-sha256` pins the scenario: the node refuses any other the server sends), a
connection named e.g. `loopback` in `$FLWR_HOME/config.toml` (`[superlink.loopback]` with
`address = "127.0.0.1:9092"` and `insecure = true`), then `flwr run`:

    flower-superlink --insecure --host 127.0.0.1 --port 9092 --disable-runtime-dependency-installation
    flower-supernode --insecure --superlink 127.0.0.1:9092 --port 9100 \\
        --node-config "partition-id=0 secfl-scenario-sha256='$(secfl digest scenario.toml)'"
    flwr run . loopback --stream

The run directory (`out`, default `runs/{name}`, relative to the SuperLink's working directory) gets
`metrics.jsonl` (one line per round), `summary.json` and `config.toml`.
'''

#: Path (with ``{package}``) -> template.
FILES: dict[str, str] = {
    "pyproject.toml": PYPROJECT,
    "{package}/__init__.py": '"""{name}: a Flower app with secfl\'s secure aggregation."""\n',
    "{package}/client_app.py": CLIENT_APP,
    "{package}/server_app.py": SERVER_APP,
    "scenario.toml": SCENARIO,
    "README.md": README,
}


def check_name(name: str) -> str:
    """The Python package of app ``name`` (hyphens to underscores, lower case), or ``ConfigurationError``.

    A name is what Flower accepts as ``[project].name`` (a letter, then letters, digits and hyphens, at most
    32), ASCII only, and its package must not shadow a module Python would otherwise import (``secfl``,
    ``torch``, the standard library...), since the app's directory goes first on the path."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigurationError(f"app name {name!r}: use a letter, then letters, digits and '-' (at most 32), e.g. "
                                 "'my-secure-app'; or choose it with --name")
    package = name.replace("-", "_").lower()
    if keyword.iskeyword(package) or package in sys.stdlib_module_names or _importable(package):
        raise ConfigurationError(f"app name {name!r}: its package {package!r} would shadow an installed module; "
                                 "choose another name with --name")
    return package


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return True


def write_flower_app(directory: Path | str, *, name: str | None = None, publisher: str = "secfl-user",
                     force: bool = False) -> list[Path]:
    """Write the app into ``directory`` (created if missing); return the files written.

    Args:
        directory: the app's directory; its name is the app's name unless ``name`` is given.
        name: the app's name (``[project].name``).
        publisher: ``[tool.flwr.app].publisher``.
        force: write into a non-empty directory (overwriting the app's files, keeping any other).

    Raises:
        ConfigurationError: a bad name or publisher, a non-empty directory without ``force``, a path that
            is not a directory.
    """
    directory = Path(directory)
    name = directory.resolve().name if name is None else name
    package = check_name(name)
    if not isinstance(publisher, str) or not PUBLISHER.fullmatch(publisher):
        raise ConfigurationError(f"publisher {publisher!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    if directory.exists() and not directory.is_dir():
        raise ConfigurationError(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ConfigurationError(f"{directory} is not empty; choose an empty or new directory, or pass --force "
                                 "(the app's files are overwritten, other files kept)")
    fields = {"name": name, "package": package, "publisher": publisher}
    written = []
    if (directory / package).is_symlink():
        raise ConfigurationError(f"{directory / package} is a symbolic link; remove it first")
    for relative, template in FILES.items():
        path = directory / relative.format(**fields)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ConfigurationError(f"{path} exists and is not a regular file; remove it first")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields), encoding="utf-8")
        written.append(path)
    return written
