"""Deployment: the app ``secfl new flower-app`` writes, run by ``flwr run`` on a real SuperLink and 4 SuperNodes
(separate processes on loopback ports), one SuperNode SIGKILLed in the middle of the secure sum.

The SuperNode of client 1 dies (with its SuperExec and ClientApp process) the moment it receives round 1's
masked-input request: it has shared its key shares but its masked input never arrives, so the survivors
must reveal its key shares for the server to remove its masks (SecAgg+'s dropout recovery). Round 1 then
sums the 3 survivors; round 2 runs without the dead node (the SuperLink answers its train request with a
"node unavailable" error once its heartbeat lapsed, else the stage timeout ends the wait). 4 clients because
a SecAgg+ group of 3 tolerates no dropout (t = 2 of k = 2 neighbours: a survivor needs both to confirm it)
and the round after the kill still needs 3.

Slow on purpose: Flower runs every message to a node in a fresh ``flwr-clientapp`` process that imports the
app (torch and secfl), and a SecAgg+ round is 8 messages per node.
"""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest
import tomli_w

pytest.importorskip("flwr")

from secfl.integrations.flower.template import write_flower_app  # noqa: E402
from secfl.scenario import load  # noqa: E402
from secfl.scenario_pin import canonical_text, digest  # noqa: E402

pytestmark = pytest.mark.slow

NODES, VICTIM, ROUNDS = 4, 1, 2
TIMEOUT = 60.0  # seconds a protocol stage waits: a live node answered in ~15 s (mean) on 2 busy cores


def wait_for(what: str, predicate, processes, limit: float):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        processes.track()
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")


def rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_supernode_killed_mid_round_drops_out_and_the_run_finishes(tmp_path, processes, flower_env):
    started = time.monotonic()
    app = tmp_path / "secure-app"
    write_flower_app(app)
    spec = tomllib.loads((app / "scenario.toml").read_text())
    spec["data"]["num_clients"], spec["run"]["rounds"] = NODES, ROUNDS
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(tomli_w.dumps(spec))
    out = tmp_path / "run"
    assert "'" not in str(scenario) + str(out)

    pin = digest(canonical_text(load(scenario)))  # `secfl digest scenario.toml`: each node takes only this one
    link, node_ports = processes.port(), [processes.port() for _ in range(NODES)]
    (Path(flower_env["FLWR_HOME"]) / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    processes.start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
                    "--disable-runtime-dependency-installation", cwd=tmp_path)
    wait_for("the SuperLink", lambda: "Uvicorn running" in processes.log("superlink"), processes, 60)
    for i, port in enumerate(node_ports):
        processes.start(f"node{i}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                        "--port", str(port), "--node-config",
                        f"partition-id={i} num-partitions={NODES} secfl-scenario-sha256='{pin}'", cwd=tmp_path)
    wait_for("the SuperNodes to connect", lambda: all("SuperNode ID:" in processes.log(f"node{i}")
                                                      for i in range(NODES)), processes, 90)

    run = processes.start("flwr-run", "flwr", "run", str(app), "loopback", "--stream", "--run-config",
                          f"scenario='{scenario}' out='{out}' timeout={TIMEOUT}", cwd=tmp_path)

    def masked_input_requested() -> bool:  # the victim's 4th protocol request after its first train message
        log = processes.log(f"node{VICTIM}").split("Receiving: train message", 1)
        return len(log) == 2 and log[1].count("Receiving: query.secfl message") >= 4

    wait_for("round 1's masked-input request at the victim", masked_input_requested, processes, 400)
    assert not rows(out / "metrics.jsonl"), "round 1 finished before the kill"
    killed = processes.kill_tree(f"node{VICTIM}")
    assert len(killed) >= 2  # the SuperNode and at least its SuperExec

    wait_for("flwr run to finish", lambda: run.poll() is not None, processes, 900)
    stream = processes.log("flwr-run")
    done = rows(out / "metrics.jsonl")
    assert [r["round"] for r in done] == list(range(1, ROUNDS + 1)), stream[-4000:]
    assert (out / "summary.json").exists(), stream[-4000:]
    # every round summed the 3 survivors: the victim's masked input never arrived (round 1), nor its update (2)
    for round_ in range(1, ROUNDS + 1):
        line = (f"secfl round {round_}: the secure sum holds {NODES - 1} of {NODES} clients; dropped out "
                f"(no reply in time or an error): [{VICTIM}]")
        assert line in stream, stream[-4000:]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["clients"] == NODES for r in done)
    assert done[-1]["accuracy"] > 0.3  # it learned (10 classes): the recovered sums were right
    assert run.returncode == 0, stream[-4000:]
    print(f"deployment test: {time.monotonic() - started:.0f} s; accuracy {[r['accuracy'] for r in done]}")
