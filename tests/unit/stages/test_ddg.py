import math

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.grouping import Buckets, OneGroup
from secfl.hazmat import ring
from secfl.pipeline import Pipeline
from secfl.privacy import Accountant, DiscreteSumDpEvent
from secfl.protocols import Plaintext, SecAggPlus
from secfl.stages import DistributedDiscreteGaussian
from secfl.types import Bounds, Update

D = 300


def updates(n, rng, norm=0.5):
    out = []
    for i in range(n):
        v = rng.normal(size=D)
        out.append(Update(i, (v * norm / np.linalg.norm(v)).astype(np.float32), weight=1.0 + i))
    return out


def test_secure_sum_of_the_noisy_integers_equals_the_clear_sum_exactly(rng):
    pipeline = Pipeline(clients_per_round=8, stages=[DistributedDiscreteGaussian(1.0, 1.0, D, bits=16)],
                        protocol=SecAggPlus(), grouping=OneGroup())
    encoded = [pipeline.encode(u, relative_weight=1.0, rng=rng) for u in updates(8, rng)]
    assert encoded[0].values.dtype == np.uint32 and encoded[0].values.size == 512 + 1  # padded + weight
    secure = SecAggPlus().run(encoded, groups=[list(range(8))])
    clear = Plaintext().run(encoded, groups=[list(range(8))])
    in_z = sum(ring.lift(e.values, 16) for e in encoded)  # the noisy sum in Z, then wrapped
    assert np.array_equal(secure.sums, clear.sums)
    assert np.array_equal(ring.lift(secure.sums[0], 16), ring.lift(in_z.astype(np.uint64), 16))
    assert ring.lift(secure.sums[0], 16)[-1] == 8  # the weight coordinate counts the contributors


def test_decoded_mean_is_unbiased_with_noise_of_the_stated_size(rng):
    stage = DistributedDiscreteGaussian(0.5, 1.0, D, bits=20, trust="simulation")  # plaintext stands in for SecAgg
    pipeline = Pipeline(clients_per_round=10, stages=[stage], grouping=OneGroup())
    ups = updates(10, rng)
    out = pipeline.run_round(ups, rng=rng)
    true_mean = np.mean([u.values for u in ups], axis=0)  # uniform weights in a private pipeline
    err = (out.aggregate - true_mean) * 10  # the noise on the sum
    # z * c per coordinate, d = 300 samples from the OS CSPRNG: both bounds are 6 standard errors (the std's
    # standard error is 0.5 / sqrt(2 d) = 0.02), so a correct stage fails about once in 10^8 runs
    assert np.std(err) == pytest.approx(0.5 * 1.0, rel=0.25)
    assert abs(np.mean(err)) < 6 * 0.5 / math.sqrt(D)
    assert out.group_weights[0] == 10


def test_zero_inputs_show_the_central_noise_only(rng):
    pipeline = Pipeline(clients_per_round=4, stages=[DistributedDiscreteGaussian(2.0, 0.1, 4000, bits=24,
                                                                                 mechanism="skellam", trust="simulation")],
                        grouping=OneGroup())
    zeros = [Update(i, np.zeros(4000, np.float32)) for i in range(4)]
    out = pipeline.run_round(zeros, rng=rng)
    assert np.std(out.aggregate * 4) == pytest.approx(2.0 * 0.1, rel=0.07)  # 6 standard errors of the std


def test_clipping_happens_after_rotation_and_bounds_the_contribution(rng):
    stage = DistributedDiscreteGaussian(1e-3, 1.0, D, bits=32).bind(bound_in=Bounds.UNBOUNDED, group_size=1)
    big = np.append(np.full(D, 10.0), 1.0).astype(np.float32)
    decoded = stage.decode(stage.encode(Update(0, big), rng=rng).values, count=1)
    assert np.linalg.norm(decoded[:-1]) == pytest.approx(1.0, rel=0.01)
    assert np.allclose(decoded[:-1], np.full(D, 1 / math.sqrt(D)), atol=0.01)


def test_event_and_epsilon_match_the_continuous_gaussian_at_many_bits():
    stage = DistributedDiscreteGaussian(1.0, 1.0, 2**16 - 5, bits=20).bind(bound_in=Bounds.UNBOUNDED,
                                                                          group_size=100)
    event = stage.dp_event()
    assert isinstance(event, DiscreteSumDpEvent) and event.clients == 100 and event.dim == 2**16
    assert event.l2 / (stage.scale * 1.0) < 1.001  # rounding inflation negligible at 20 bits
    acc = Accountant("rdp", "poisson")
    discrete = acc.epsilon_of([(event, 100)], sample_rate=1.0, delta=1e-5)
    gaussian = acc.epsilon(noise_multiplier=1.0, sample_rate=1.0, rounds=100, delta=1e-5)
    assert discrete == pytest.approx(gaussian, rel=0.02)
    fewer = acc.epsilon_of([(stage.dp_event(contributors=50), 100)], sample_rate=1.0, delta=1e-5)
    assert fewer > 1.3 * discrete  # dropouts leave less noise: accounted


def test_few_bits_inflate_epsilon():
    eps = []
    for bits in (10, 16):
        stage = DistributedDiscreteGaussian(1.0, 1.0, 2**16, bits=bits).bind(bound_in=Bounds.UNBOUNDED,
                                                                            group_size=100)
        eps.append(Accountant("rdp").epsilon_of([(stage.dp_event(), 1)], sample_rate=1.0, delta=1e-5))
    assert eps[0] > 1.3 * eps[1]


def test_refusals():
    with pytest.raises(IncompatibleStagesError, match="bits"):
        DistributedDiscreteGaussian(1.0, 1.0, D, bits=4).bind(bound_in=Bounds.UNBOUNDED, group_size=100)
    stage = DistributedDiscreteGaussian(1.0, 1.0, D).bind(bound_in=Bounds.UNBOUNDED, group_size=3)
    with pytest.raises(ConfigurationError, match="dim=300"):
        stage.encode(Update(0, np.zeros(10, np.float32)), rng=np.random.default_rng(0))
    with pytest.raises(ConfigurationError, match="Pipeline"):
        DistributedDiscreteGaussian(1.0, 1.0, D).encode(Update(0, np.zeros(D + 1, np.float32)),
                                                        rng=np.random.default_rng(0))
    for kwargs in ({"noise_multiplier": 0.0}, {"clip": -1.0}, {"dim": 0}, {"bits": 40}, {"mechanism": "laplace"},
                   {"beta": 1.0}, {"modclip_prob": 2.0}):
        args = {"noise_multiplier": 1.0, "clip": 1.0, "dim": D, **kwargs}
        with pytest.raises(ConfigurationError):
            DistributedDiscreteGaussian(**args)
    with pytest.raises(IncompatibleStagesError, match="last"):
        from secfl.stages import Quantize
        Pipeline(clients_per_round=4, stages=[DistributedDiscreteGaussian(1.0, 1.0, D), Quantize()])


def test_each_bucket_splits_the_noise_over_its_own_clients(rng):
    pipeline = Pipeline(clients_per_round=11, stages=[DistributedDiscreteGaussian(1.0, 1.0, D)],
                        protocol=SecAggPlus(), grouping=Buckets(size=4))
    stage = pipeline.stages[0]
    assert stage.share == 3  # the smallest bucket a round can have (worst case for the ring bound)
    assert stage.for_group(4).local_stddev == pytest.approx(stage.local_stddev * math.sqrt(3 / 4))
    out = pipeline.run_round(updates(11, rng), rng=rng)  # 11 clients -> buckets of 4, 4, 3
    assert out.group_means.shape == (3, D) and sorted(out.group_weights) == [3, 4, 4]
    event = out.dp_event  # every bucket holds the full central noise z c s
    assert event.local_stddev * math.sqrt(event.clients) == pytest.approx(stage.scale * 1.0 * 1.0)
