import math

import numpy as np
import pytest

from secfl.aggregators import MajorityVote
from secfl.exceptions import ConfigurationError, IncompatibleStagesError, ProtocolError
from secfl.grouping import Buckets, OneGroup
from secfl.hazmat.ring import ring_sum
from secfl.pipeline import Pipeline
from secfl.protocols import DropoutSchedule, Plaintext, SecAggPlus
from secfl.stages import Quantize
from secfl.stages.bitpack import BitPack, pack_fields, unpack_fields, words_for
from secfl.stages.sign import SignBinarize
from secfl.types import Bounds, Update

S = 0.01
S32 = np.float32(S)


def updates(rng, k, d, *, weights=True):
    # uneven public weights: BitPack must make them uniform
    return [Update(i, rng.normal(size=d).astype(np.float32), weight=float(i + 1) if weights else 1.0)
            for i in range(k)]


def direct_mean(ups, alive=None):
    rows = [np.where(u.values >= 0, S32, -S32).astype(np.float64) for u in ups
            if alive is None or u.client_id in alive]
    return np.mean(rows, axis=0)


def bound(k, **kwargs):
    return BitPack(S, **kwargs).bind(bound_in=Bounds.UNBOUNDED, group_size=k)


def client_vector(rng, d):
    return np.append(np.where(rng.random(d) < 0.5, S32, -S32), np.float32(1.0)).astype(np.float32)


@pytest.mark.parametrize("r", range(1, 9))
def test_pack_unpack_round_trip(r, rng):
    f = 32 // r
    for n in (1, f - 1 or 1, f, f + 1, 10 * f + 3):
        fields = rng.integers(0, 2**r, n)
        words = pack_fields(fields, r)
        assert words.dtype == np.uint32 and words.size == math.ceil(n / f) == words_for(n, r)
        assert np.array_equal(unpack_fields(words, r, n), fields)
        assert not np.any(unpack_fields(words, r)[n:])  # padding fields are zero
        if 32 % r:
            assert not np.any(words >> np.uint32(r * f))  # unused high bits are zero


def test_layout_is_little_endian_fields():
    assert pack_fields(np.array([1, 2, 3]), 4).tolist() == [0x321]
    assert pack_fields(np.array([1] + [0] * 31 + [1]), 1).tolist() == [1, 1]
    assert pack_fields(np.array([5, 7, 1]), 3).tolist() == [5 | 7 << 3 | 1 << 6]


@pytest.mark.parametrize("r", range(1, 9))
def test_field_sums_of_k_clients_equal_plain_bit_sums_even_under_cancelling_masks(r, rng):
    k, d = 2**r - 1, 301  # the largest group r bits allow: every field sum may reach 2^r - 1
    bits = rng.integers(0, 2, (k, d))
    bits[:, :5] = 1  # some fields hit the maximum, K
    packed = np.stack([pack_fields(b, r) for b in bits])
    masks = rng.integers(0, 2**32, packed.shape, dtype=np.uint64).astype(np.uint32)
    masks[-1] = -ring_sum(masks[:-1])  # masks cancel mod 2^32, as SecAgg's do
    for rows in (packed, packed + masks):
        assert np.array_equal(unpack_fields(ring_sum(rows), r, d), bits.sum(0))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 8, 15, 16, 31, 255, 256, 1000])
def test_field_bits_are_ceil_log2_k_plus_1(k):
    stage = bound(k)
    assert stage.field_bits == math.ceil(math.log2(k + 1))
    assert stage.measurements()["bitpack/bits_per_coordinate"] == stage.field_bits


def test_encode_decode_one_group_sum(rng):
    stage, d = bound(5), 77
    rows = [client_vector(rng, d) for _ in range(5)]
    words = [stage.encode(Update(i, r), rng=rng).values for i, r in enumerate(rows)]
    assert all(w.dtype == np.uint32 and w.size == math.ceil((d + 1) / 10) for w in words)  # r = 3, 10 per word
    decoded = stage.decode(ring_sum(np.stack(words)), count=5)
    assert np.allclose(decoded, np.sum(rows, axis=0, dtype=np.float64), rtol=0, atol=1e-15)
    assert decoded[-1] == 5.0
    m = stage.measurements()
    assert m["bitpack/words"] == math.ceil((d + 1) / 10) and m["bitpack/fields_per_word"] == 10


def test_secure_bit_sum_equals_plaintext_sum(rng):
    k, d = 6, 1000
    ups = updates(rng, k, d)
    outs = {}
    for protocol in (SecAggPlus(), Plaintext()):
        pipeline = Pipeline(clients_per_round=k, stages=[SignBinarize(scale=S), BitPack(scale=S)],
                            protocol=protocol, grouping=OneGroup())
        outs[protocol.name] = pipeline.run_round(ups, rng=np.random.default_rng(9))
    secure, plain = outs["secagg+"], outs["plaintext"]
    assert secure.result.sums.dtype == np.uint32
    assert np.array_equal(secure.result.sums, plain.result.sums)
    assert np.array_equal(secure.aggregate, plain.aggregate)
    assert np.allclose(secure.aggregate, direct_mean(ups), rtol=0, atol=1e-15)
    assert secure.group_weights.tolist() == [float(k)]  # uniform weights: n = k, whatever the client weights
    assert secure.measurements["bitpack/bits_per_coordinate"] == 3


def ratio(k, protocol_cls, d=10_000):
    ups = updates(np.random.default_rng(k), k, d)
    up = {}
    for kind, stages in (("bits", [SignBinarize(scale=S), BitPack(scale=S)]),
                         ("q32", [Quantize(scale=2.0**20, bits=32, bound=1.0)])):
        protocol = protocol_cls()
        out = Pipeline(clients_per_round=k, stages=stages, protocol=protocol,
                       grouping=OneGroup()).run_round(ups, rng=np.random.default_rng(1))
        up[kind] = out.measurements[f"{protocol.name}/bytes_up"] / k  # bytes per client
        up[kind + "_view"] = out.result.view.total_bytes / k
    assert up["bits"] == up["bits_view"] and up["q32"] == up["q32_view"]
    return up["q32"] / up["bits"]


def test_uploads_shrink_at_least_4x_for_15_clients():
    # r = 4: 8 fields per word. Measured: plaintext 40017 / 5017 B = 7.98x; SecAgg+ (with its key and
    # share messages) 42663 / 7663 B = 5.57x per client
    assert ratio(15, Plaintext) >= 7.9
    assert ratio(15, SecAggPlus) >= 4
    assert ratio(2, Plaintext) >= 15.8  # r = 2: 16 fields per word


def test_dropouts_decode_over_the_contributors(rng):
    k, d = 6, 300
    ups = updates(rng, k, d)
    for protocol, stage in ((SecAggPlus(), "masked_input"), (Plaintext(), "upload")):
        pipeline = Pipeline(clients_per_round=k, stages=[SignBinarize(scale=S), BitPack(scale=S)],
                            protocol=protocol, grouping=OneGroup())
        out = pipeline.run_round(ups, rng=rng, dropouts=DropoutSchedule({2: stage, 4: stage}))
        alive = {0, 1, 3, 5}
        assert set(out.result.survivors[0]) == alive
        assert out.group_weights.tolist() == [4.0]
        assert np.allclose(out.aggregate, direct_mean(ups, alive), rtol=0, atol=1e-15)


def test_individual_groups_pack_32_per_word_and_buckets_vote(rng):
    ups = updates(rng, 6, 64)
    out = Pipeline(clients_per_round=6, stages=[SignBinarize(scale=S), BitPack(scale=S)]).run_round(ups, rng=rng)
    assert out.measurements["bitpack/bits_per_coordinate"] == 1 and out.measurements["bitpack/words"] == 3
    assert np.allclose(out.group_means, [direct_mean([u]) for u in ups], rtol=0, atol=1e-15)
    nine = updates(rng, 9, 64)
    vote = Pipeline(clients_per_round=9, stages=[SignBinarize(scale=S), BitPack(scale=S)], protocol=SecAggPlus(),
                    grouping=Buckets(3), aggregator=MajorityVote()).run_round(nine, rng=rng)
    assert vote.measurements["bitpack/bits_per_coordinate"] == 2
    buckets = [direct_mean(nine, set(alive)) for alive in vote.result.survivors]
    assert np.allclose(vote.group_means, buckets, rtol=0, atol=1e-15)  # each bucket's exact mean
    # 3 odd buckets of 3 votes: a majority of bucket majorities, never a tie
    assert np.array_equal(vote.aggregate, np.sign(np.sign(buckets).sum(0))) and np.all(vote.aggregate != 0)


def test_non_binary_and_per_client_scales_are_refused(rng):
    ups = updates(rng, 3, 20)
    for stages in ([BitPack(scale=S)],  # raw reals
                   [SignBinarize(), BitPack(scale=S)],  # per-client scale mean |x|
                   [SignBinarize(scale=0.02), BitPack(scale=S)],  # another public scale
                   [SignBinarize("stochastic"), BitPack(scale=S)]):  # per-client max |x|
        pipeline = Pipeline(clients_per_round=3, stages=stages, protocol=SecAggPlus(), grouping=OneGroup())
        with pytest.raises(ConfigurationError, match="not ±scale"):
            pipeline.run_round(ups, rng=rng)
    ok = Pipeline(clients_per_round=3, stages=[SignBinarize("stochastic", scale=S), BitPack(scale=S)],
                  protocol=SecAggPlus(), grouping=OneGroup())
    assert ok.run_round(ups, rng=rng).group_weights.tolist() == [3.0]  # stochastic with the public scale is fine


def test_weight_other_than_one_wrong_length_and_unbound_are_refused(rng):
    stage = bound(4)
    x = client_vector(rng, 10)
    x[-1] = 0.5
    with pytest.raises(ConfigurationError, match="weight"):
        stage.encode(Update(0, x), rng=rng)
    stage.encode(Update(0, client_vector(rng, 10)), rng=rng)
    with pytest.raises(ConfigurationError, match="expected d = 10"):
        stage.encode(Update(1, client_vector(rng, 11)), rng=rng)
    with pytest.raises(ConfigurationError, match="Pipeline"):
        BitPack(S).encode(Update(0, client_vector(rng, 3)), rng=rng)
    with pytest.raises(ConfigurationError, match="real vectors"):
        stage.encode(Update(0, np.zeros(11, np.uint32)), rng=rng)


def test_groups_larger_than_bound_are_refused(rng):
    stage, d = bound(3), 12  # r = 2
    words = ring_sum(np.stack([stage.encode(Update(i, client_vector(rng, d)), rng=rng).values for i in range(4)]))
    with pytest.raises(IncompatibleStagesError, match="groups of 3"):
        stage.decode(words, count=4)
    pipeline = Pipeline(clients_per_round=3, stages=[SignBinarize(scale=S), BitPack(scale=S)], grouping=OneGroup())
    with pytest.raises(ConfigurationError, match="at most 3"):
        pipeline.run_round(updates(rng, 4, d), rng=rng)


def test_decode_rejects_sums_no_honest_clients_produce(rng):
    stage, d = bound(7), 20  # r = 3
    rows = [client_vector(rng, d) for _ in range(3)]
    for row in rows:
        row[0] = -S32  # nobody votes + at coordinate 0 ...
    words = [stage.encode(Update(i, r), rng=rng).values for i, r in enumerate(rows)]
    total = ring_sum(np.stack(words))
    with pytest.raises(ProtocolError):
        stage.decode(total, count=2)  # weight field 3 != 2 contributors
    cheat = words[0].copy()
    cheat[0] |= np.uint32(0b111)  # ... but one client's field claims 7 votes: 7 > n = 3
    with pytest.raises(ProtocolError):
        stage.decode(ring_sum(np.stack([cheat, *words[1:]])), count=3)


def test_decode_without_known_dim_finds_the_weight_field(rng):
    sender, d = bound(5), 23
    rows = [client_vector(rng, d) for _ in range(5)]
    total = ring_sum(np.stack([sender.encode(Update(i, r), rng=rng).values for i, r in enumerate(rows)]))
    server = bound(5)  # has seen no update: infers d from the last non-zero field
    assert np.allclose(server.decode(total, count=5), np.sum(rows, axis=0, dtype=np.float64), atol=1e-15)


def test_he_is_refused_at_pipeline_construction():
    from secfl.protocols import HeSum

    with pytest.raises(IncompatibleStagesError, match="SecAgg"):
        Pipeline(clients_per_round=3, stages=[SignBinarize(scale=S), BitPack(scale=S)], protocol=HeSum("bfv"),
                 grouping=OneGroup())


@pytest.mark.parametrize("kwargs", [{"scale": 0}, {"scale": -0.1}, {"scale": math.inf}, {"scale": 1e39},
                                    {"scale": S, "dim": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        BitPack(**kwargs)
    with pytest.raises(ConfigurationError):
        BitPack(S).bind(bound_in=Bounds.UNBOUNDED, group_size=0)


def test_uniform_weights_and_bound():
    assert BitPack.uniform_weights is True and BitPack.output == "ring"
    assert bound(3).value_bound(Bounds(linf=1.0)).linf == 1.0
