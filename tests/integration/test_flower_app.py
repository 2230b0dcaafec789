"""``secfl new flower-app``: the files it writes, the names and directories it refuses, and (slow) the app
run by ``flwr run`` in Flower's local simulation, as its README says."""

from __future__ import annotations

import importlib.util
import json
import time
import tomllib

import pytest
from typer.testing import CliRunner

pytest.importorskip("flwr")

from secfl.cli import app as cli  # noqa: E402
from secfl.exceptions import ConfigurationError  # noqa: E402
from secfl.integrations.flower.template import check_name, write_flower_app  # noqa: E402

runner = CliRunner()


def test_writes_a_flower_app_with_secfl(tmp_path):
    result = runner.invoke(cli, ["new", "flower-app", str(tmp_path / "my-app")])
    assert result.exit_code == 0, result.output
    app = tmp_path / "my-app"
    assert sorted(str(p.relative_to(app)) for p in app.rglob("*") if p.is_file()) == [
        "README.md", "my_app/__init__.py", "my_app/client_app.py", "my_app/server_app.py", "pyproject.toml",
        "scenario.toml"]
    project = tomllib.loads((app / "pyproject.toml").read_text())
    flwr = project["tool"]["flwr"]["app"]
    assert project["project"]["name"] == "my-app"
    assert flwr["components"] == {"serverapp": "my_app.server_app:app", "clientapp": "my_app.client_app:app"}
    assert {"scenario", "out", "timeout"} <= set(flwr["config"])
    scenario = tomllib.loads((app / "scenario.toml").read_text())
    assert scenario["protocol"]["kind"] == "secagg+" and scenario["data"]["num_clients"] == 5
    for path in app.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    client = (app / "my_app" / "client_app.py").read_text()
    assert "secure(ClientApp(mods=[secfl_mod]))" in client and '"num-examples"' in client

    from flwr.cli.config_utils import load_and_validate  # Flower's own check of an app's pyproject.toml

    _, warnings = load_and_validate(app / "pyproject.toml")
    assert all("license" in w for w in warnings)


def test_the_client_model_is_the_scenario_model(tmp_path, monkeypatch):
    """The user's ``Net`` must match the model the server keeps (the same parameters, in the same order)."""
    app = tmp_path / "shape-check"
    write_flower_app(app)
    spec = importlib.util.spec_from_file_location("shape_check_client_app", app / "shape_check" / "client_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from secfl import scenario
    from secfl.run_setup import RunSetup

    setup = RunSetup(scenario.load(app / "scenario.toml"))
    assert [tuple(p.shape) for p in module.Net().parameters()] == [tuple(p.shape) for p in setup.model.parameters()]


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "1app", "-app", "my_app", "x" * 33, "app\u00e9", ".", "a b"])
def test_refuses_bad_names(tmp_path, name):
    with pytest.raises(ConfigurationError, match="app name"):
        write_flower_app(tmp_path / "app", name=name)
    assert not (tmp_path / "app").exists()


@pytest.mark.parametrize("name", ["secfl", "torch", "json", "flwr", "import"])
def test_refuses_names_that_shadow_a_module(name):
    with pytest.raises(ConfigurationError, match="shadow"):
        check_name(name)


def test_refuses_a_non_empty_directory_unless_forced(tmp_path):
    app = tmp_path / "busy"
    app.mkdir()
    (app / "notes.txt").write_text("mine")
    result = runner.invoke(cli, ["new", "flower-app", str(app)])
    assert result.exit_code == 2 and "not empty" in result.output and "--force" in result.output
    assert sorted(p.name for p in app.iterdir()) == ["notes.txt"]
    (app / "scenario.toml").write_text("old")
    assert runner.invoke(cli, ["new", "flower-app", str(app), "--force", "--name", "other-name"]).exit_code == 0
    assert (app / "notes.txt").read_text() == "mine" and "secagg+" in (app / "scenario.toml").read_text()
    assert (app / "other_name" / "client_app.py").exists()


def test_refuses_a_file_and_symlinks(tmp_path):
    (tmp_path / "afile").write_text("x")
    assert runner.invoke(cli, ["new", "flower-app", str(tmp_path / "afile")]).exit_code == 2
    app, elsewhere = tmp_path / "linked", tmp_path / "elsewhere"
    app.mkdir()
    elsewhere.mkdir()
    (app / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        write_flower_app(app, force=True)
    (app / "linked").unlink()
    (app / "README.md").symlink_to(elsewhere / "target.md")
    with pytest.raises(ConfigurationError, match="not a regular file"):
        write_flower_app(app, force=True)
    assert not any(elsewhere.iterdir())


def test_bad_publisher_exits_2(tmp_path):
    result = runner.invoke(cli, ["new", "flower-app", str(tmp_path / "pub"), "--publisher", "a/b"])
    assert result.exit_code == 2 and "publisher" in result.output
    assert not (tmp_path / "pub").exists()


@pytest.mark.slow
def test_the_app_runs_in_flowers_local_simulation(tmp_path, processes):
    """``flwr run APP local``: Flower starts a local SuperLink (kept running: stopped here by PID) and simulates
    5 SuperNodes; the run directory lands in ``runs/<name>`` under the working directory, every round in it."""
    app = tmp_path / "sim-app"
    write_flower_app(app)
    link, control = processes.port(), processes.port()
    processes.env.update({"FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(link), "FLWR_LOCAL_CONTROL_API_PORT": str(control)})
    started = time.monotonic()
    run = processes.start("flwr-run", "flwr", "run", str(app), "local", "--stream", "--federation-config",
                          "num-supernodes=5", cwd=tmp_path)
    deadline = time.monotonic() + 600
    while run.poll() is None and time.monotonic() < deadline:
        processes.track()
        time.sleep(0.1)
    stream = processes.log("flwr-run")
    assert run.returncode == 0, stream[-4000:]
    out = tmp_path / "runs" / "sim-app"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [1, 2, 3], stream[-4000:]
    assert all(r["clients"] == 5 for r in rows) and rows[-1]["accuracy"] > 0.5
    assert "secfl round 3: the secure sum holds 5 of 5 clients" in stream
    print(f"simulation test: {time.monotonic() - started:.0f} s; accuracy {[r['accuracy'] for r in rows]}")
