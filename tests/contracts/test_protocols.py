"""Every protocol: sums equal the Plaintext oracle (and numpy) on the same inputs and dropouts."""

import numpy as np
import pytest

from secfl import registry
from secfl.exceptions import MalformedMessageError
from secfl.hazmat import wire
from secfl.protocols import Plaintext
from secfl.types import DropoutSchedule, Update

PROTOCOLS = {kind: cls for kind, cls in registry.PROTOCOLS.items()}


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request):
    return PROTOCOLS[request.param]()


def ring_updates(rng, n, d):
    return [Update(i, rng.integers(0, 2**16, size=d, dtype=np.uint64)) for i in range(n)]


@pytest.mark.parametrize("groups", [[[0, 1, 2, 3, 4, 5]], [[0], [1], [2], [3], [4], [5]], [[5, 0], [1, 4], [2, 3]]])
def test_equals_plaintext_and_numpy(protocol, rng, groups):
    ups = ring_updates(rng, 6, 33)
    result = protocol.run(ups, groups=groups)
    oracle = Plaintext().run(ups, groups=groups)
    assert np.array_equal(result.sums, oracle.sums)
    for g, members in enumerate(groups):
        assert np.array_equal(result.sums[g], np.sum([ups[c].values for c in members], axis=0, dtype=np.uint64))


def test_equals_plaintext_under_dropouts(protocol, rng):
    ups = ring_updates(rng, 6, 9)
    groups = [[0, 1, 2], [3, 4, 5]]
    for stage in protocol.stages:
        dropouts = DropoutSchedule({1: stage, 4: stage})
        result = protocol.run(ups, groups=groups, dropouts=dropouts)
        oracle = Plaintext().run(ups, groups=groups, dropouts=DropoutSchedule({1: "upload", 4: "upload"}))
        assert result.survivors == oracle.survivors and np.array_equal(result.sums, oracle.sums)


def test_view_is_bytes_only_and_measured(protocol, rng):
    result = protocol.run(ring_updates(rng, 3, 4), groups=[[0, 1, 2]])
    assert all(isinstance(m, bytes) for msgs in result.view.received.values() for m in msgs)
    assert result.measurements[f"{protocol.name}/bytes_up"] >= result.view.total_bytes > 0


def test_view_decoders_reject_garbage(protocol, rng):
    result = protocol.run(ring_updates(rng, 2, 4), groups=[[0, 1]])
    message = result.view.received[0][0]
    with pytest.raises(MalformedMessageError):
        wire.decode_vector(message[:-1])
