import dp_accounting
import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.stages import GaussianNoise
from secfl.types import Bounds, Update


def test_noise_multiplier_is_calibrated_to_the_l2_bound():
    stage = GaussianNoise(1.5, placement="client").bind(bound_in=Bounds(linf=2.0, l2=2.0), group_size=4)
    assert stage.std == pytest.approx(3.0) and stage.client_std() == pytest.approx(3.0)
    event = stage.dp_event()
    assert isinstance(event, dp_accounting.GaussianDpEvent) and event.noise_multiplier == pytest.approx(1.5)
    assert stage.value_bound(Bounds(linf=2.0, l2=2.0)).linf == pytest.approx(2.0 + 9 * 3.0)


def test_distributed_noise_is_split_over_the_smallest_expected_group():
    stage = GaussianNoise(1.5).bind(bound_in=Bounds(linf=2.0, l2=2.0), group_size=5, min_group_size=4)
    assert stage.client_std() == pytest.approx(3.0 / 2)  # 4 shares of variance 9/4 sum to 9
    assert stage.dp_event().noise_multiplier == pytest.approx(1.5)
    assert stage.dp_event(contributors=1).noise_multiplier == pytest.approx(1.5 / 2)  # dropouts: less noise
    assert stage.value_bound(Bounds(linf=2.0, l2=2.0)).linf == pytest.approx(2.0 + 9 * 1.5)


def test_distributed_shares_sum_to_the_central_std():
    stage = GaussianNoise(2.0, secure=False).bind(bound_in=Bounds(linf=1.0, l2=1.0), group_size=4)
    rng = np.random.default_rng(0)
    total = sum(stage.encode(Update(i, np.zeros(50_000, np.float32)), rng=rng).values.astype(np.float64)
                for i in range(4))
    assert total.std() == pytest.approx(2.0, rel=0.02)


@pytest.mark.parametrize("secure", [True, False])
def test_central_noise_is_added_by_the_server_and_spares_the_weight(secure):
    stage = GaussianNoise(0.5, placement="central", secure=secure).bind(bound_in=Bounds(linf=2.0, l2=2.0),
                                                                          group_size=10)
    update = Update(0, np.ones(10, np.float32))
    assert np.array_equal(stage.encode(update, rng=np.random.default_rng(0)).values, update.values)
    total = np.append(np.zeros(100_000), 7.0)
    decoded = stage.decode(total, count=7)
    assert decoded[-1] == 7.0 and total[0] == 0.0  # weight exact, input untouched
    assert decoded[:-1].std() == pytest.approx(1.0, rel=0.02)
    assert stage.dp_event(contributors=3).noise_multiplier == pytest.approx(0.5)


def test_secure_noise_is_snapped_to_a_power_of_two_grid():
    stage = GaussianNoise(std=0.75)
    out = stage.encode(Update(0, np.full(1000, 0.123456789, np.float32)), rng=np.random.default_rng(0))
    grid = 2.0 ** (0 - 20)  # ceil(log2 0.75) = 0
    steps = out.values.astype(np.float64) / grid
    assert np.array_equal(steps, np.round(steps))


def test_noise_multiplier_needs_a_clip_upstream():
    with pytest.raises(IncompatibleStagesError, match="L2Clip"):
        GaussianNoise(1.0).bind(bound_in=Bounds.UNBOUNDED, group_size=1)
    with pytest.raises(ConfigurationError, match="Pipeline"):
        GaussianNoise(1.0).encode(Update(0, np.zeros(3, np.float32)), rng=np.random.default_rng(0))


def test_std_without_sensitivity_is_not_private():
    assert isinstance(GaussianNoise(std=1.0).dp_event(), dp_accounting.NonPrivateDpEvent)


@pytest.mark.parametrize("secure", [True, False])
def test_noise_has_the_stated_std(secure):
    stage = GaussianNoise(std=0.5, secure=secure)
    out = stage.encode(Update(0, np.full(100_000, 1.0, np.float32)), rng=np.random.default_rng(0))
    assert out.values.dtype == np.float32
    assert abs(out.values.mean() - 1.0) < 6 * 0.5 / np.sqrt(1e5)
    assert abs(out.values.std() - 0.5) < 0.01


def test_insecure_mode_follows_the_experiment_rng_and_secure_does_not():
    values = Update(0, np.zeros(8, np.float32))
    insecure = GaussianNoise(std=1.0, secure=False)
    a = insecure.encode(values, rng=np.random.default_rng(7)).values
    b = insecure.encode(values, rng=np.random.default_rng(7)).values
    assert np.array_equal(a, b)
    secure = GaussianNoise(std=1.0)
    c = secure.encode(values, rng=np.random.default_rng(7)).values
    d = secure.encode(values, rng=np.random.default_rng(7)).values
    assert not np.array_equal(c, d)


@pytest.mark.parametrize("kwargs", [{}, {"noise_multiplier": 1.0, "std": 1.0}, {"std": -1.0}, {"noise_multiplier": float("nan")},
                                    {"noise_multiplier": 1.0, "placement": "everywhere"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        GaussianNoise(**kwargs)
