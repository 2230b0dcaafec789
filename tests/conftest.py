"""Shared test set-up: deterministic torch, no Flower telemetry, small helpers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")
torch.use_deterministic_algorithms(True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
