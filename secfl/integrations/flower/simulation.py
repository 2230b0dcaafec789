"""``secfl run SCENARIO --engine flower``: a scenario in Flower's simulation engine (Ray), one SuperNode per
client, secfl's own apps; the run directory is the embedded engine's, and so are the sums and the accuracy
curve for the same seed (the clients' encoding streams come from the round's seed: a simulation setting)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from secfl import engine
from secfl.integrations.flower.node import SIMULATION_ENV
from secfl.integrations.flower.server import FlowerRounds, check_supported
from secfl.runs import RunDir

__all__ = ["simulate"]


def simulate(scenario: Any, run_dir: RunDir, *, resume: bool = False, on_round: Callable[[dict], None] | None = None,
             timeout: float = 300.0, cpus_per_client: float = 1.0) -> dict[str, Any]:
    """Run (or resume) ``scenario`` in Flower's simulation engine into ``run_dir``; return the summary.

    Raises what ``engine.run`` raises, and ``ConfigurationError`` for what secfl over Flower does not run."""
    check_supported(scenario)
    os.environ[SIMULATION_ENV] = "1"  # the simulated nodes take the round's seeds: the run equals the embedded one
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
    from flwr.simulation import run_simulation

    from secfl.integrations.flower.apps import client_app

    summary: dict[str, Any] = {}
    failure: list[BaseException] = []
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            rounds = FlowerRounds(grid, scenario, timeout=timeout, reproducible=True)
            summary.update(engine.run(scenario, run_dir, resume=resume, on_round=on_round, transport=rounds))
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    run_simulation(server_app=app, client_app=client_app, num_supernodes=scenario.data.num_clients,
                   backend_config={"client_resources": {"num_cpus": cpus_per_client, "num_gpus": 0.0}})
    if failure:
        raise failure[0]
    return summary
