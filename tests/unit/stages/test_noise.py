import dp_accounting
import numpy as np
import pytest

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.stages import GaussianNoise
from secfl.types import Bounds, Update


def test_noise_multiplier_is_calibrated_to_the_l2_bound():
    stage = GaussianNoise(1.5).bind(bound_in=Bounds(linf=2.0, l2=2.0), group_size=4)
    assert stage.std == pytest.approx(3.0)
    event = stage.dp_event()
    assert isinstance(event, dp_accounting.GaussianDpEvent) and event.noise_multiplier == pytest.approx(1.5)
    assert stage.value_bound(Bounds(linf=2.0, l2=2.0)).linf == pytest.approx(2.0 + 9 * 3.0)


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


@pytest.mark.parametrize("kwargs", [{}, {"noise_multiplier": 1.0, "std": 1.0}, {"std": -1.0}, {"noise_multiplier": float("nan")}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        GaussianNoise(**kwargs)
