"""secfl over Flower (``pip install "secfl[flower]"``): secure sums, robust rules and DP accounting for
Flower apps, through the Message API.

- ``secfl_mod`` and ``secure``: ``app = secure(ClientApp(mods=[secfl_mod]))`` around any app. The app trains
  as usual; the mod keeps its update on the node (the server never receives it) and ``secure`` registers the
  protocol's queries, answered by secfl's client state machine.
- ``FlowerRounds`` / ``serve``: the server side for a ``ServerApp``: enrolls the nodes, sends the model, drives
  the protocol stages through the ``Grid`` and runs secfl's engine round (groupings, robust aggregators, the
  privacy ledger, metrics in a run directory).
- ``simulate``: ``secfl run SCENARIO --engine flower``: the scenario in Flower's simulation engine (Ray).

The protocol code is the embedded engine's (``secfl.remote``); only the transport differs. Flower and Ray stay
optional: ``import secfl`` never imports them.
"""

from __future__ import annotations

import importlib.util

from secfl.exceptions import ConfigurationError

if importlib.util.find_spec("flwr") is None:  # pragma: no cover - exercised only without the extra
    raise ConfigurationError('secfl.integrations.flower needs Flower: pip install "secfl[flower]"')

from secfl.integrations.flower.node import secfl_mod, secure  # noqa: E402
from secfl.integrations.flower.server import FlowerRounds, serve  # noqa: E402
from secfl.integrations.flower.simulation import simulate  # noqa: E402

__all__ = ["secfl_mod", "secure", "FlowerRounds", "serve", "simulate"]
