"""Every protocol: sums equal the Plaintext oracle (and numpy) on the same inputs and dropouts."""

import numpy as np
import pytest

from secfl import registry
from secfl.exceptions import ConfigurationError, MalformedMessageError
from secfl.hazmat import wire
from secfl.protocols import Plaintext
from secfl.types import INPUT_KINDS, DropoutSchedule, SecureSum, Update

# factories; HE sums signed values mod 2^bits: 32 bits hold these words (< 2^16) and their sums as they are
PROTOCOLS = {kind: cls for kind, cls in registry.PROTOCOLS.items()}
PROTOCOLS["he"] = lambda: registry.PROTOCOLS["he"](bits=32)


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request):
    return PROTOCOLS[request.param]()


def ring_updates(rng, n, d):
    return [Update(i, rng.integers(0, 2**16, size=d, dtype=np.uint64)) for i in range(n)]


@pytest.mark.parametrize("groups", [[[0, 1, 2, 3, 4, 5]], [[0], [1], [2], [3], [4], [5]], [[5, 0, 3], [1, 4, 2]]])
def test_equals_plaintext_and_numpy(protocol, rng, groups):
    if min(map(len, groups)) < protocol.min_group_size:
        with pytest.raises(ConfigurationError, match="groups of"):
            protocol.run(ring_updates(rng, 6, 33), groups=groups)
        return
    ups = ring_updates(rng, 6, 33)
    result = protocol.run(ups, groups=groups)
    oracle = Plaintext().run(ups, groups=groups)
    assert np.array_equal(result.sums, oracle.sums)
    for g, members in enumerate(groups):
        assert np.array_equal(result.sums[g], np.sum([ups[c].values for c in members], axis=0, dtype=np.uint64))


def test_capabilities_are_declared_and_bind_never_mutates(protocol):
    assert isinstance(protocol, SecureSum)
    assert protocol.input_kind in INPUT_KINDS
    assert isinstance(protocol.min_group_size, int) and protocol.min_group_size >= 1
    assert isinstance(protocol.secure, bool) and isinstance(protocol.accepts_packed, bool)
    assert protocol.secure == (protocol.name != "plaintext")
    before = dict(vars(protocol))
    bound = protocol.bind(bits=None if protocol.input_kind == "real" else 16)
    assert isinstance(bound, SecureSum) and type(bound) is type(protocol)
    assert vars(protocol) == before  # binding makes a new object (or returns this one unchanged)
    protocol.check_group_size(max(protocol.min_group_size, 3))
    with pytest.raises(ConfigurationError, match=">= "):
        protocol.check_group_size(protocol.min_group_size - 1)


def test_equals_plaintext_under_dropouts(protocol, rng):
    """A client dropped at or before the protocol's input stage is out of the sum; later, it is in."""
    ups = ring_updates(rng, 12, 9)
    groups = [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    for stage in protocol.stages:
        dropouts = DropoutSchedule({1: stage, 8: stage})
        result = protocol.run(ups, groups=groups, dropouts=dropouts)
        left_out = protocol.stages.index(stage) <= protocol.stages.index(protocol.input_stage)
        oracle = Plaintext().run(ups, groups=groups, dropouts=DropoutSchedule({1: "upload", 8: "upload"} if left_out else {}))
        assert result.survivors == oracle.survivors and np.array_equal(result.sums, oracle.sums)


def test_view_is_bytes_only_and_measured(protocol, rng):
    result = protocol.run(ring_updates(rng, 3, 4), groups=[[0, 1, 2]])
    assert result.measurements[f"{protocol.name}/seconds"] >= 0
    assert all(isinstance(m, bytes) for msgs in result.view.received.values() for m in msgs)
    assert result.measurements[f"{protocol.name}/bytes_up"] >= result.view.total_bytes > 0


def test_view_messages_are_framed(protocol, rng):
    result = protocol.run(ring_updates(rng, 3, 4), groups=[[0, 1, 2]])
    for message in result.view.received[0]:
        kind = message[3]
        assert wire.unframe(message, kind=kind) == message[8:]
        with pytest.raises(MalformedMessageError):
            wire.unframe(message[:-1], kind=kind)
