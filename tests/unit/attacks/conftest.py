"""The attack tests train tiny models: one torch thread (``one_torch_thread`` in tests/conftest.py) for each module."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield
