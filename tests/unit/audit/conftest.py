"""The audit tests train and invert tiny models: on a busy 2-core machine one torch thread runs them ~30x
faster than two (measured on the inversion tests)."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
