import math

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, IncompatibleStagesError, ProtocolError
from secfl.grouping import Buckets, OneGroup
from secfl.hazmat.ring import ring_sum
from secfl.pipeline import Pipeline
from secfl.protocols import DropoutSchedule, Plaintext, SecAggPlus
from secfl.stages import FedBatBits, L2Clip, Quantize
from secfl.types import Bounds, Update

SEGMENTS = [(0, 600), (650, 950)]  # 900 binarized coordinates, 50 + 50 others (biases, proposals)
D = 1000


def vectors(rng, k, *, binary=True):
    """Clients' x = m / alpha: +-1 (already binarized) or reals, and small full-precision rest."""
    out = []
    for i in range(k):
        x = rng.normal(scale=0.01, size=D)
        for start, stop in SEGMENTS:
            x[start:stop] = np.sign(rng.normal(size=stop - start)) if binary else rng.uniform(-1.2, 1.2, stop - start)
        out.append(Update(i, x.astype(np.float32), weight=float(i + 1)))
    return out


def mask():
    m = np.zeros(D, dtype=bool)
    for start, stop in SEGMENTS:
        m[start:stop] = True
    return m


def bound(k, **kwargs):
    return FedBatBits(SEGMENTS, **kwargs).bind(bound_in=Bounds.UNBOUNDED, group_size=k)


def test_secure_bit_sum_equals_the_plaintext_sum_and_the_direct_sum(rng):
    k = 7
    ups = vectors(rng, k)
    outs = {}
    for protocol in (SecAggPlus(), Plaintext()):
        pipeline = Pipeline(clients_per_round=k, stages=[FedBatBits(SEGMENTS)], protocol=protocol, grouping=OneGroup())
        outs[protocol.name] = pipeline.run_round(ups, rng=np.random.default_rng(3))
    secure, plain = outs["secagg+"], outs["plaintext"]
    assert np.array_equal(secure.result.sums, plain.result.sums)  # the same words, masks cancelled
    assert np.array_equal(secure.aggregate, plain.aggregate)
    direct = np.mean([u.values.astype(np.float64) for u in ups], axis=0)
    m = mask()
    assert np.array_equal(secure.aggregate[m], direct[m])  # signs: exact
    assert np.max(np.abs(secure.aggregate[~m] - direct[~m])) <= 1 / 2**16  # one fixed-point step
    assert secure.group_weights.tolist() == [float(k)]  # uniform weights whatever the example counts
    assert secure.measurements["fedbat_bits/bits_per_binarized"] == 3


def test_binarization_is_unbiased_for_values_inside_one(rng):
    stage = bound(1)
    x = np.zeros(D, dtype=np.float32)
    x[:600] = np.linspace(-1, 1, 600)
    x[650:950] = 1.7  # beyond alpha: the sign, deterministically
    total, trials = np.zeros(D + 1), 2000
    for _ in range(trials):
        total += stage.decode(stage.encode(Update(0, np.append(x, 1.0).astype(np.float32)), rng=rng).values, count=1)
    mean = total / trials
    assert np.max(np.abs(mean[:600] - x[:600])) < 5 / math.sqrt(trials)  # 5 sigma of a +-1 mean
    assert np.all(mean[650:950] == 1.0)


@pytest.mark.parametrize("k, bits", [(1, 1), (3, 2), (7, 3), (15, 4), (16, 5)])
def test_field_width_is_ceil_log2_k_plus_1_and_the_words_shrink(k, bits, rng):
    stage = bound(k)
    assert stage.bit_width == bits
    words = stage.encode(Update(0, np.append(vectors(rng, 1)[0].values, 1.0).astype(np.float32)), rng=rng).values
    expected = math.ceil(901 / (32 // bits)) + math.ceil(100 / (32 // stage.rest_width))
    assert words.dtype == np.uint32 and words.size == expected
    assert stage.measurements()["fedbat_bits/words"] == expected


def test_fifteen_clients_upload_at_least_4x_less_than_32_bit_masked_fedavg(rng):
    k, d = 15, 20_000
    segments = [(0, d - 200)]  # an MLP-like share of binarized weights: 99%
    ups = [Update(i, np.append(np.sign(rng.normal(size=d - 200)), rng.normal(scale=0.01, size=200)).astype(np.float32))
           for i in range(k)]
    per_client = {}
    for kind, stages in (("bits", [FedBatBits(segments)]), ("q32", [L2Clip(10.0), Quantize(2.0**16, bits=32)])):
        out = Pipeline(clients_per_round=k, stages=stages, protocol=SecAggPlus(), grouping=OneGroup()).run_round(
            ups, rng=np.random.default_rng(1))
        per_client[kind] = out.measurements["secagg+/bytes_up"] / k
    # measured: 80,663 / 13,663 B = 5.9x per client (4-bit fields plus SecAgg+'s keys and shares)
    assert per_client["q32"] / per_client["bits"] >= 4


def test_dropouts_and_buckets_decode_over_the_contributors(rng):
    ups = vectors(rng, 8)
    m = mask()
    out = Pipeline(clients_per_round=8, stages=[FedBatBits(SEGMENTS)], protocol=SecAggPlus(),
                   grouping=Buckets(4)).run_round(ups, rng=rng, dropouts=DropoutSchedule({2: "masked_input"}))
    for mean, alive in zip(out.group_means, out.result.survivors):
        direct = np.mean([ups[i].values.astype(np.float64) for i in alive], axis=0)
        assert np.array_equal(mean[m], direct[m])
    assert sorted(out.group_weights.tolist()) == [3.0, 4.0]


def test_bad_inputs_are_refused(rng):
    stage = bound(4)
    x = np.append(vectors(rng, 1)[0].values, 0.5).astype(np.float32)
    with pytest.raises(ConfigurationError, match="weight"):
        stage.encode(Update(0, x), rng=rng)
    with pytest.raises(ConfigurationError, match="beyond"):
        stage.encode(Update(0, np.ones(501, np.float32)), rng=rng)
    stage.encode(Update(0, np.append(vectors(rng, 1)[0].values, 1.0).astype(np.float32)), rng=rng)
    with pytest.raises(ConfigurationError, match="expected 1000"):
        stage.encode(Update(0, np.ones(1002, np.float32)), rng=rng)
    with pytest.raises(ConfigurationError, match="Pipeline"):
        FedBatBits(SEGMENTS).encode(Update(0, x), rng=rng)
    with pytest.raises(ConfigurationError, match="segments"):
        FedBatBits([(5, 3)])
    with pytest.raises(ConfigurationError, match="scale"):
        FedBatBits(SEGMENTS, scale=0)
    with pytest.raises(IncompatibleStagesError, match="32-bit word"):
        FedBatBits(SEGMENTS, scale=2.0**30).bind(bound_in=Bounds.UNBOUNDED, group_size=8)


def test_decode_rejects_sums_no_honest_clients_produce(rng):
    stage = bound(7)
    rows = [np.append(u.values, 1.0).astype(np.float32) for u in vectors(rng, 3)]
    total = ring_sum(np.stack([stage.encode(Update(i, r), rng=rng).values for i, r in enumerate(rows)]))
    stage.decode(total, count=3)
    with pytest.raises(IncompatibleStagesError, match="groups of 7"):
        stage.decode(total, count=8)
    for tamper in (lambda w: w.__setitem__(0, w[0] | np.uint32(7)),  # a vote count above n
                   lambda w: w.__setitem__(-1, w[-1] + np.uint32(1 << 31))):  # a rest field beyond any honest sum
        words = total.copy()
        tamper(words)
        with pytest.raises(ProtocolError, match="honest"):
            stage.decode(words, count=3)
    with pytest.raises(ProtocolError, match="shape"):
        stage.decode(total[:-1], count=3)
