"""Known-answer vectors of protocols/plaintext/ (common wire frame and the plaintext sum)."""

import json
from pathlib import Path

import numpy as np
import pytest

from secfl import exceptions
from secfl.hazmat import wire
from secfl.protocols import Plaintext
from secfl.types import Update

VECTORS = Path(__file__).resolve().parents[2] / "protocols" / "plaintext" / "vectors"


def load(kind):
    data = json.loads((VECTORS / f"{kind}.json").read_text())
    assert data["kind"] == kind and data["wire_version"] == wire.VERSION
    return data["cases"]


def values(case_values, dtype):
    return np.array([int(v) if dtype.startswith("uint") else v for v in case_values], dtype=dtype)


@pytest.mark.parametrize("case", load("generate"), ids=lambda c: c["id"])
def test_generate(case):
    assert wire.encode_vector(values(case["values"], case["dtype"])).hex() == case["message"]


@pytest.mark.parametrize("case", load("verify"), ids=lambda c: c["id"])
def test_verify(case):
    updates = [
        Update(int(cid), wire.decode_vector(bytes.fromhex(hexed), length=case["length"], dtype=case["dtype"]))
        for cid, hexed in case["messages"].items()
    ]
    result = Plaintext().run(updates, groups=case["groups"])
    expected = np.stack([values(row, "uint64" if case["dtype"].startswith("uint") else "float64") for row in case["sums"]])
    assert np.array_equal(result.sums, expected)


@pytest.mark.parametrize("case", load("invalid"), ids=lambda c: c["id"])
def test_invalid(case):
    error = getattr(exceptions, case["error"])
    with pytest.raises(error):
        wire.decode_vector(bytes.fromhex(case["message"]), length=case["length"], dtype=case["dtype"])
