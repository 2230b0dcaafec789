"""Uploads are parsed in a limited worker process: bad input is a named secfl error, never a crash or a hang."""

import multiprocessing
import os
import time

import numpy as np
import pytest
import tenseal as ts

from secfl.exceptions import MalformedMessageError
from secfl.protocols import he_sandbox
from secfl.protocols.he import HeSum
from secfl.protocols.he_params import new_context
from secfl.types import Update

D = 1000


@pytest.fixture(scope="module")
def setup():
    params = HeSum(bits=20).parameters
    private = new_context(params)
    public = private.serialize(save_secret_key=False, save_galois_keys=False, save_relin_keys=False)
    blobs = [ts.bfv_vector(private, list(range(c, c + D))).serialize() for c in range(3)]
    return private, public, blobs


def test_the_worker_sum_equals_the_in_process_sum(setup):
    private, public, blobs = setup
    total = he_sandbox.sum_isolated(public, blobs, scheme="bfv", d=D)
    got = he_sandbox.parse_vector(private, total, scheme="bfv", d=D).decrypt()
    assert got == (3 * np.arange(D) + 3).tolist()
    assert got == he_sandbox.sum_vectors(private, blobs, scheme="bfv", d=D).decrypt()


@pytest.mark.parametrize("bad", [b"", b"\0" * 100, np.random.default_rng(0).bytes(20000), b"\x0a\xff\xff\xff\xff\x0f"])
def test_garbage_that_reaches_the_worker_is_refused(setup, bad):
    _, public, blobs = setup
    with pytest.raises(MalformedMessageError):
        he_sandbox.sum_isolated(public, [blobs[0], bad], scheme="bfv", d=D)


def test_another_length_or_a_garbage_context_is_refused(setup):
    _, public, blobs = setup
    with pytest.raises(MalformedMessageError):
        he_sandbox.sum_isolated(public, blobs, scheme="bfv", d=D + 1)
    with pytest.raises(MalformedMessageError):
        he_sandbox.sum_isolated(os.urandom(1000), blobs, scheme="bfv", d=D)


def test_a_worker_over_its_memory_limit_is_refused_not_fatal(setup, monkeypatch):
    _, public, blobs = setup
    monkeypatch.setattr(he_sandbox, "BASE_MEMORY", 0)
    monkeypatch.setattr(he_sandbox, "PER_BYTE_MEMORY", 0)  # no room beyond what the worker has mapped
    with pytest.raises(MalformedMessageError):
        he_sandbox.sum_isolated(public, blobs, scheme="bfv", d=D)


def test_a_worker_past_its_time_is_killed_and_refused(setup):
    _, public, blobs = setup
    start = time.perf_counter()
    with pytest.raises(MalformedMessageError, match="took over"):
        he_sandbox.sum_isolated(public, blobs * 20, scheme="bfv", d=D, timeout=0.0)
    assert time.perf_counter() - start < 10
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_a_round_with_isolation_parses_no_upload_in_the_key_holder(monkeypatch):
    """The key holder's process parses only the sum the worker returns (one parse per group)."""
    parsed, real = [], he_sandbox.parse_vector

    def counting(*args, **kwargs):
        parsed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("secfl.protocols.he_roles.parse_vector", counting)
    monkeypatch.setattr("secfl.protocols.he_roles.sum_vectors", None)  # never called in-process
    rng = np.random.default_rng(0)
    ups = [Update(i, rng.integers(0, 2**20, D, dtype=np.uint32)) for i in range(4)]
    result = HeSum(bits=20).run(ups, groups=[[0, 1], [2, 3]])
    assert len(parsed) == 2 and result.sums.shape == (2, D)
