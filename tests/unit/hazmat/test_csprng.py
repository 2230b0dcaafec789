import numpy as np

from secfl.hazmat import csprng


def test_uniform_range_and_moments():
    u = csprng.uniform(200_000)
    assert u.dtype == np.float64 and u.min() >= 0 and u.max() < 1
    # 6-sigma tolerances: a false failure has probability below 1e-8.
    assert abs(u.mean() - 0.5) < 6 * np.sqrt(1 / 12 / u.size)


def test_normal_moments():
    z = csprng.normal(400_001)
    assert z.size == 400_001
    assert abs(z.mean()) < 6 / np.sqrt(z.size)
    assert abs(z.var() - 1) < 6 * np.sqrt(2 / z.size)
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 6 * np.sqrt(0.05 * 0.95 / z.size)


def test_draws_ignore_the_numpy_seed():
    np.random.seed(0)
    a = csprng.normal(16)
    np.random.seed(0)
    b = csprng.normal(16)
    assert not np.array_equal(a, b)
    assert csprng.random_bytes(32) != csprng.random_bytes(32)
