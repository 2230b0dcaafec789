import dp_accounting
import numpy as np
import pytest

from secfl.aggregators import Median
from secfl.exceptions import ConfigurationError, IncompatibleStagesError, InsufficientParticipantsError
from secfl.grouping import Buckets, Individual, OneGroup
from secfl.pipeline import Pipeline
from secfl.stages import GaussianNoise, L2Clip, Quantize
from secfl.types import DropoutSchedule, Update


def make_updates(rng, n=6, d=12, scale=0.1):
    return [Update(i, (rng.normal(size=d) * scale).astype(np.float32), weight=float(i + 1)) for i in range(n)]


def weighted_mean(ups):
    return sum(u.values.astype(np.float64) * u.weight for u in ups) / sum(u.weight for u in ups)


@pytest.mark.parametrize("grouping", [Individual(), OneGroup(), Buckets(2), Buckets(4)])
def test_weighted_fedavg_is_exact_without_stages(rng, grouping):
    ups = make_updates(rng)
    out = Pipeline(clients_per_round=6, grouping=grouping).run_round(ups, rng=rng)
    assert np.allclose(out.aggregate, weighted_mean(ups), atol=1e-6)
    assert out.group_weights.sum() == pytest.approx(21.0 / 6)  # relative weights w / max w, summed


@pytest.mark.parametrize("grouping", [Individual(), OneGroup(), Buckets(3)])
def test_quantized_fedavg_is_within_the_rounding_error(rng, grouping):
    ups = make_updates(rng)
    pipeline = Pipeline(clients_per_round=6, stages=[L2Clip(1.0), Quantize(scale=2**16)], grouping=grouping)
    out = pipeline.run_round(ups, rng=rng)
    assert out.result.sums.dtype == np.uint32  # 2^16 scale, bound 1, <= 6 clients: 20 bits
    # each client's weighted value is off by < 1/scale; dividing by the relative weight mass (>= 1/6)
    # of a group keeps the error below 6/scale
    assert np.max(np.abs(out.aggregate - weighted_mean(ups))) < 6 / 2**16


def test_aggregator_needing_more_groups_is_refused_with_the_fix():
    with pytest.raises(IncompatibleStagesError, match=r"needs >= 5 inputs .* yields 1 group.*buckets\", size = 4"):
        Pipeline(clients_per_round=20, grouping=OneGroup(), aggregator=Median(num_byzantine=2))
    with pytest.raises(IncompatibleStagesError, match="sample at least 5 clients"):
        Pipeline(clients_per_round=3, aggregator=Median(num_byzantine=2))
    Pipeline(clients_per_round=20, grouping=Buckets(4), aggregator=Median(num_byzantine=2))


def test_real_stage_after_ring_stage_is_refused():
    with pytest.raises(IncompatibleStagesError, match="must be the last"):
        Pipeline(clients_per_round=2, stages=[L2Clip(1.0), Quantize(), L2Clip(1.0)])


def test_ring_is_sized_for_the_largest_group():
    pipeline = Pipeline(clients_per_round=20, stages=[L2Clip(1.0), Quantize(scale=2**10)], grouping=Buckets(5))
    assert pipeline.stages[1].group_size == 5
    assert pipeline.stages[1].bits == 14  # 2 * 5 * 1025 + 1 values -> 14 bits


def test_non_components_are_refused():
    with pytest.raises(ConfigurationError, match="aggregator"):
        Pipeline(clients_per_round=2, aggregator=lambda x: x)
    with pytest.raises(ConfigurationError, match="clients_per_round"):
        Pipeline(clients_per_round=0)


def test_round_checks(rng):
    pipeline = Pipeline(clients_per_round=2)
    with pytest.raises(ConfigurationError, match="at most 2"):
        pipeline.run_round(make_updates(rng, n=3), rng=rng)
    bad = [Update(0, np.array([np.nan, 1.0], np.float32))]
    with pytest.raises(ConfigurationError, match="client 0 .*non-finite"):
        pipeline.run_round(bad, rng=rng)


def test_dropouts_reduce_groups_and_can_abort(rng):
    ups = make_updates(rng, n=5)
    pipeline = Pipeline(clients_per_round=5, aggregator=Median(num_byzantine=2))
    out = pipeline.run_round(ups, rng=rng)
    assert out.group_means.shape[0] == 5
    with pytest.raises(InsufficientParticipantsError):
        pipeline.run_round(ups, rng=rng, dropouts=DropoutSchedule({0: "upload"}))


def test_dropped_client_is_left_out_of_the_weighted_mean(rng):
    ups = make_updates(rng, n=4)
    out = Pipeline(clients_per_round=4, grouping=OneGroup()).run_round(
        ups, rng=rng, dropouts=DropoutSchedule({3: "upload"}))
    assert np.allclose(out.aggregate, weighted_mean(ups[:3]), atol=1e-6)


def test_dp_event_composes_the_noise_stages():
    pipeline = Pipeline(clients_per_round=4, stages=[L2Clip(2.0), GaussianNoise(1.1), Quantize()])
    event = pipeline.dp_event()
    assert isinstance(event, dp_accounting.GaussianDpEvent)
    assert event.noise_multiplier == pytest.approx(1.1, rel=1e-5)
    assert isinstance(Pipeline(clients_per_round=1).dp_event(), dp_accounting.NoOpDpEvent)


def test_measurements_name_their_component(rng):
    out = Pipeline(clients_per_round=3, stages=[L2Clip(1.0), Quantize()], grouping=OneGroup()).run_round(
        make_updates(rng, n=3), rng=rng)
    for key in ("plaintext/bytes_up", "quantize/bits", "pipeline/groups", "pipeline/seconds"):
        assert key in out.measurements
    assert out.measurements["pipeline/groups"] == 1


def test_weights_travel_inside_the_summed_vector(rng):
    ups = make_updates(rng, n=4, d=3)
    out = Pipeline(clients_per_round=4, grouping=OneGroup()).run_round(ups, rng=rng)
    assert out.result.sums.shape == (1, 4)  # d values + the weight
    assert out.result.sums[0, -1] == pytest.approx(sum(u.weight for u in ups) / 4)


def test_weight_cap_bounds_each_clients_influence(rng):
    ups = [Update(0, np.ones(2, np.float32), weight=1.0), Update(1, np.zeros(2, np.float32), weight=1000.0)]
    capped = Pipeline(clients_per_round=2, grouping=OneGroup(), weight_cap=10.0).run_round(ups, rng=rng)
    assert np.allclose(capped.aggregate, 1 / 11)  # weight 1000 counts as 10
    with pytest.raises(ConfigurationError, match="weight_cap"):
        Pipeline(clients_per_round=2, weight_cap=0.0)


def test_secure_protocols_need_a_ring_stage_and_big_enough_groups():
    from secfl.protocols import SecAggPlus

    with pytest.raises(IncompatibleStagesError, match="end the stages with Quantize"):
        Pipeline(clients_per_round=6, protocol=SecAggPlus(), grouping=OneGroup(), stages=[L2Clip(1.0)])
    with pytest.raises(IncompatibleStagesError, match="groups of >= 3 .* groups of 2"):
        Pipeline(clients_per_round=6, protocol=SecAggPlus(), grouping=Buckets(2), stages=[L2Clip(1.0), Quantize()])


def test_secure_bucketed_pipeline_equals_plaintext_up_to_rounding(rng):
    from secfl.protocols import SecAgg

    ups = make_updates(rng, n=9)
    stages = [L2Clip(1.0), Quantize(scale=2**20)]
    secure = Pipeline(clients_per_round=9, stages=stages, protocol=SecAgg(), grouping=Buckets(3),
                      aggregator=Median(num_byzantine=1))
    out = secure.run_round(ups, rng=np.random.default_rng(5))
    plain = Pipeline(clients_per_round=9, stages=stages, grouping=Buckets(3), aggregator=Median(num_byzantine=1))
    ref = plain.run_round(ups, rng=np.random.default_rng(5))
    assert np.array_equal(out.result.sums, ref.result.sums)  # same buckets, same rounding: identical sums
    assert np.array_equal(out.aggregate, ref.aggregate)
    assert out.measurements["secagg/threshold"] == 2


def test_distributed_noise_follows_the_round_size_and_dropouts_are_accounted(rng):
    pipeline = Pipeline(clients_per_round=20, grouping=OneGroup(),
                        stages=[L2Clip(1.0), GaussianNoise(2.0, secure=False, trust="simulation")])
    ups = [Update(i, rng.normal(size=20_000).astype(np.float32) * 1e-3) for i in range(5)]
    full = pipeline.run_round(ups, rng=rng)
    assert full.dp_event.noise_multiplier == pytest.approx(2.0)  # 5 shares of z^2 C^2 / 5
    assert np.std(full.aggregate * 5) == pytest.approx(2.0, rel=0.03)
    dropped = pipeline.run_round(ups, rng=rng, dropouts=DropoutSchedule({3: "upload"}))
    assert dropped.dp_event.noise_multiplier == pytest.approx(2.0 * np.sqrt(4 / 5))
    assert dropped.measurements["dp/contributors"] == 4 and dropped.measurements["dp/shares"] == 5
    assert pipeline.relative_weight(7.0, 100.0) == 1.0  # a private pipeline weighs every client 1
