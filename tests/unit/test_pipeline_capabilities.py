"""The pipeline reads only the capabilities components declare: third-party components built from the
base classes, input kinds, binding to new objects, partner checks, and FLTrust's per-round reference."""

import inspect
from typing import ClassVar

import numpy as np
import pytest

import secfl.pipeline
from secfl.aggregators import BaseAggregator, Chain, FLTrust, Mean, StaticClip
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.grouping import Buckets, Individual, OneGroup
from secfl.pipeline import Pipeline
from secfl.protocols import Plaintext
from secfl.stages import BaseStage, BitPack, GaussianNoise, L2Clip, Quantize, SignBinarize
from secfl.types import NO_DROPOUTS, BaseSecureSum, Update


def make_updates(rng, n=4, d=6):
    return [Update(i, (rng.normal(size=d) * 0.1).astype(np.float32), weight=float(i + 1)) for i in range(n)]


def weighted_mean(ups):
    return sum(u.values.astype(np.float64) * u.weight for u in ups) / sum(u.weight for u in ups)


class Negate(BaseStage):
    """A third-party real stage: sends -x, decodes the sum back (the weight, last, stays)."""

    name: ClassVar[str] = "negate"

    def encode(self, update, *, rng):
        return update.replace(-update.values)

    def decode(self, total, *, count):
        return np.append(-np.asarray(total[:-1]), total[-1])


class ClearSum(BaseSecureSum):
    """A third-party protocol that only overrides what differs: it sums real values (in the clear)."""

    name: ClassVar[str] = "clear"
    stages: ClassVar[tuple[str, ...]] = ("upload",)
    input_kind: ClassVar[str] = "real"

    def run(self, updates, *, groups, dropouts=NO_DROPOUTS):
        return Plaintext().run(updates, groups=groups, dropouts=dropouts)


class RingSum(ClearSum):
    """Sums ring words; binding makes a new protocol that remembers the ring's bits."""

    input_kind: ClassVar[str] = "ring"

    def __init__(self, bits=None):
        self.bits, self.checked = bits, []

    def bind(self, *, bits=None):
        return type(self)(bits)

    def check_group_size(self, size):
        super().check_group_size(size)
        self.checked.append(size)


class WeightedMean(BaseAggregator):
    """A third-party rule that keeps the defaults (no ids, no reference, no partner stage)."""

    name: ClassVar[str] = "weighted_mean"

    def __call__(self, vectors, *, weights=None):
        return np.average(vectors, axis=0, weights=weights)


def test_third_party_components_from_the_base_classes_work(rng):
    ups = make_updates(rng)
    pipeline = Pipeline(clients_per_round=4, stages=[Negate()], protocol=ClearSum(), grouping=Buckets(2),
                        aggregator=WeightedMean())
    out = pipeline.run_round(ups, rng=rng)
    assert np.allclose(out.aggregate, weighted_mean(ups), atol=1e-6)
    assert not pipeline.secure_sum  # a protocol is not ``secure`` unless it says so


def test_a_ring_stage_into_a_real_input_protocol_is_refused():
    with pytest.raises(IncompatibleStagesError, match="sums real values"):
        Pipeline(clients_per_round=3, stages=[L2Clip(1.0), Quantize()], protocol=ClearSum(), grouping=OneGroup())
    with pytest.raises(IncompatibleStagesError, match="end the stages with Quantize"):
        Pipeline(clients_per_round=3, stages=[L2Clip(1.0)], protocol=RingSum(), grouping=OneGroup())

    class Odd(ClearSum):
        input_kind: ClassVar[str] = "bytes"

    with pytest.raises(ConfigurationError, match="input_kind='bytes'"):
        Pipeline(clients_per_round=3, protocol=Odd())


def test_a_packed_stage_needs_a_protocol_that_accepts_it():
    class Fitted(RingSum):
        accepts_packed: ClassVar[bool] = False

    stages = [SignBinarize(scale=0.5), BitPack(scale=0.5)]
    with pytest.raises(IncompatibleStagesError, match="packs several fields per word"):
        Pipeline(clients_per_round=3, stages=stages, protocol=Fitted(), grouping=OneGroup())
    Pipeline(clients_per_round=3, stages=stages, protocol=RingSum(), grouping=OneGroup())


def test_binding_makes_new_objects_and_leaves_the_originals_unchanged(rng):
    protocol, quantize = RingSum(), Quantize(scale=2**10)
    pipeline = Pipeline(clients_per_round=7, stages=[L2Clip(1.0), quantize], protocol=protocol, grouping=Buckets(3))
    assert pipeline.protocol is not protocol and pipeline.stages[1] is not quantize
    assert pipeline.protocol.bits == pipeline.stages[1].bits == 13  # 2 * 3 * 1025 + 1 values
    assert protocol.bits is None and protocol.checked == [] and quantize.bits is None
    assert sorted(pipeline.protocol.checked) == [2, 3]  # the smallest and the largest group of 7 in buckets of 3
    out = pipeline.run_round(make_updates(rng, n=7), rng=rng)
    assert out.result.sums.dtype == np.uint32


def test_min_group_size_is_the_declared_one():
    class Trio(RingSum):
        min_group_size: ClassVar[int] = 3

    with pytest.raises(IncompatibleStagesError, match="groups of >= 3 .* groups of 2"):
        Pipeline(clients_per_round=6, stages=[L2Clip(1.0), Quantize()], protocol=Trio(), grouping=Buckets(2))
    assert Pipeline(clients_per_round=6, stages=[L2Clip(1.0), Quantize()], protocol=Trio(),
                    grouping=OneGroup()).min_clients == 3


def test_distributed_noise_needs_a_protocol_that_declares_itself_secure():
    stages = [L2Clip(1.0), GaussianNoise(1.0, secure=False)]
    with pytest.raises(IncompatibleStagesError, match="trust"):
        Pipeline(clients_per_round=4, stages=stages, protocol=ClearSum(), grouping=OneGroup())

    class Sealed(ClearSum):
        secure: ClassVar[bool] = True

    assert Pipeline(clients_per_round=4, stages=stages, protocol=Sealed(), grouping=OneGroup()).secure_sum


def test_uniform_weights_is_read_from_the_stage(rng):
    class Bits(Negate):
        uniform_weights: ClassVar[bool] = True

    assert Pipeline(clients_per_round=2, stages=[Bits()]).relative_weight(3.0, 9.0) == 1.0
    assert Pipeline(clients_per_round=2, stages=[Negate()]).relative_weight(3.0, 9.0) == pytest.approx(1 / 3)


def test_partner_checks_are_the_components_own():
    class Partnered(Negate):
        name: ClassVar[str] = "partnered"

        def check_pipeline(self, stages, aggregator, grouping=None):
            if aggregator.needs_stage != self.name:
                raise IncompatibleStagesError("partnered needs its rule")

    class Partner(WeightedMean):
        needs_stage: ClassVar[str] = "partnered"

        def check_pipeline(self, stages, grouping=None):
            if not any(s.name == "partnered" for s in stages):
                raise IncompatibleStagesError("the rule needs partnered")

    Pipeline(clients_per_round=2, stages=[Partnered()], aggregator=Partner())
    Pipeline(clients_per_round=2, stages=[Partnered()], aggregator=Chain(Partner(), [StaticClip(1.0)]))
    with pytest.raises(IncompatibleStagesError, match="needs its rule"):
        Pipeline(clients_per_round=2, stages=[Partnered()])
    with pytest.raises(IncompatibleStagesError, match="needs partnered"):
        Pipeline(clients_per_round=2, aggregator=Chain(Partner()))


def test_ids_go_to_a_rule_that_declares_takes_ids(rng):
    seen = []

    class Keyed(WeightedMean):
        takes_ids: ClassVar[bool] = True

        def __call__(self, vectors, *, weights=None, ids=None):
            seen.append(ids)
            return super().__call__(vectors, weights=weights)

    Pipeline(clients_per_round=4, aggregator=Keyed(), grouping=Individual()).run_round(make_updates(rng), rng=rng)
    Pipeline(clients_per_round=4, aggregator=Chain(Keyed()), grouping=Buckets(2)).run_round(
        make_updates(rng), rng=np.random.default_rng(0))
    assert seen[0] == [0, 1, 2, 3]  # one client per group: its id
    assert sorted(c for group in seen[1] for c in group) == [0, 1, 2, 3]  # buckets: each group's ids
    assert all(isinstance(group, tuple) and len(group) == 2 for group in seen[1])


def test_fltrust_gets_the_reference_through_run_round(rng):
    ups = make_updates(rng, n=5)
    g0 = rng.normal(size=6) * 0.1
    for aggregator in (FLTrust(), Chain(FLTrust(), [StaticClip(10.0)])):
        pipeline = Pipeline(clients_per_round=5, aggregator=aggregator)
        out = pipeline.run_round(ups, rng=np.random.default_rng(1), reference=g0)
        assert np.allclose(out.aggregate, FLTrust(g0)(out.group_means), rtol=1e-12)
        with pytest.raises(ConfigurationError, match=r"reference=g0"):
            pipeline.run_round(ups, rng=rng)
    fixed = Pipeline(clients_per_round=5, aggregator=FLTrust(g0))  # a reference fixed up front: none per round
    assert not fixed.aggregator.needs_reference
    assert np.array_equal(fixed.run_round(ups, rng=np.random.default_rng(1)).aggregate, out.aggregate)
    # only an aggregator that declares needs_reference is given the reference
    assert np.array_equal(fixed.run_round(ups, rng=np.random.default_rng(1), reference=-g0).aggregate, out.aggregate)
    mean = Pipeline(clients_per_round=5, aggregator=Mean())
    assert np.array_equal(mean.run_round(ups, rng=np.random.default_rng(1), reference=g0).aggregate,
                          mean.run_round(ups, rng=np.random.default_rng(1)).aggregate)


def test_the_pipeline_probes_nothing_and_imports_no_specific_rule():
    source = inspect.getsource(secfl.pipeline)
    for probe in ("getattr(", "hasattr(", "inspect.", "for_ring("):
        assert probe not in source
    imports = [line for line in source.splitlines() if line.startswith(("from ", "import "))]
    assert not [line for line in imports if "ewwa" in line.lower() or "fltrust" in line.lower()]
