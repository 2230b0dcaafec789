import math

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.stages.sign import SignBinarize
from secfl.types import Bounds, Update


def encode(stage, values, rng, client=0):
    return stage.encode(Update(client, np.asarray(values, np.float32)), rng=rng).values


def test_sign_uses_mean_abs_scale_and_sign_of_zero_is_plus(rng):
    x = np.array([0.5, -0.25, 0.0, -1.0], np.float32)
    out = encode(SignBinarize(), x, rng)
    s = np.float32(np.mean(np.abs(x.astype(np.float64))))  # 0.4375
    assert out.dtype == np.float32
    assert np.array_equal(out, np.array([s, -s, s, -s], np.float32))


def test_sign_with_public_scale_is_exactly_plus_minus_scale(rng):
    x = rng.normal(size=1000).astype(np.float32)
    out = encode(SignBinarize(scale=0.01), x, rng)
    assert np.array_equal(out, np.where(x >= 0, np.float32(0.01), np.float32(-0.01)))
    assert set(np.unique(np.abs(out))) == {np.float32(0.01)}


def test_stochastic_sign_is_unbiased_within_six_standard_errors():
    stage = SignBinarize(mode="stochastic", scale=1.0)
    levels = np.array([-1.0, -0.7, -0.2, 0.0, 0.3, 0.9, 1.0])
    draws = 40_000
    x = np.repeat(levels, draws).astype(np.float32)
    out = encode(stage, x, np.random.default_rng(7)).astype(np.float64).reshape(len(levels), draws)
    assert set(np.unique(out)) == {-1.0, 1.0}
    means = out.mean(1)
    se = np.sqrt((1.0 - levels**2) / draws)  # Var(s b) = s^2 - x^2
    assert np.all(np.abs(means - levels) <= 6 * se + 1e-12)
    assert np.all(out[0] == -1.0) and np.all(out[-1] == 1.0)  # |x| = s is deterministic


def test_stochastic_sign_with_per_client_scale_is_unbiased():
    stage = SignBinarize(mode="stochastic")  # s = max |x| = 0.8
    x = np.tile(np.array([0.8, -0.4, 0.1, 0.0], np.float32), 50_000)
    out = encode(stage, x, np.random.default_rng(3)).astype(np.float64).reshape(-1, 4)
    assert set(np.unique(np.abs(out))) == {np.float32(0.8)}
    s = float(np.float32(0.8))
    target = x[:4].astype(np.float64)
    se = np.sqrt((s**2 - target**2) / out.shape[0])
    assert np.all(np.abs(out.mean(0) - target) <= 6 * se + 1e-9)


def test_stochastic_clamps_beyond_public_scale_and_follows_the_given_rng():
    stage = SignBinarize(mode="stochastic", scale=0.1)
    x = np.array([5.0, -5.0] + [0.01] * 100, np.float32)
    a = encode(stage, x, np.random.default_rng(11))
    b = encode(stage, x, np.random.default_rng(11))
    c = encode(stage, x, np.random.default_rng(12))
    assert a[0] == np.float32(0.1) and a[1] == np.float32(-0.1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_ef_residual_accumulates_what_the_bits_did_not_carry(rng):
    stage = SignBinarize(mode="ef")
    x = np.array([1.0, -0.1, 0.05, 0.0], np.float32)
    out = encode(stage, x, rng, client=4).astype(np.float64)
    s = np.sum(np.abs(x.astype(np.float64))) / 4
    assert np.allclose(out, [s, -s, s, s], rtol=1e-6)
    e1 = stage.residual(4)
    assert np.allclose(e1, x - out, atol=1e-12)
    out2 = encode(stage, x, rng, client=4).astype(np.float64)
    p2 = x + e1
    assert np.allclose(out2, np.sum(np.abs(p2)) / 4 * np.where(p2 >= 0, 1, -1), rtol=1e-6)
    assert np.allclose(stage.residual(4), p2 - out2, atol=1e-12)
    assert stage.residual(5) is None  # other clients have their own memory


def test_ef_sum_of_outputs_tracks_sum_of_inputs_and_plain_sign_does_not():
    rng = np.random.default_rng(0)
    d, rounds = 50, 400
    base = rng.normal(size=d) * np.logspace(-2, 0, d)  # very uneven magnitudes: sign alone is biased
    ef, plain = SignBinarize(mode="ef"), SignBinarize(mode="sign")
    sum_in, sum_ef, sum_plain, residual_norms = np.zeros(d), np.zeros(d), np.zeros(d), []
    for _ in range(rounds):
        x = (base + 0.05 * rng.normal(size=d)).astype(np.float32)
        sum_in += x
        sum_ef += encode(ef, x, rng, client=1)
        sum_plain += encode(plain, x, rng, client=1)
        residual_norms.append(np.linalg.norm(ef.residual(1)))
    # exact bookkeeping: sum out = sum x - e_T
    assert np.allclose(sum_ef + ef.residual(1), sum_in, atol=1e-6 * rounds)
    # the residual stays bounded, so the average output converges to the average input
    assert max(residual_norms[rounds // 2:]) <= 1.25 * max(residual_norms[: rounds // 2])  # linear growth: 2x
    ef_error = np.linalg.norm(sum_ef - sum_in) / rounds
    plain_error = np.linalg.norm(sum_plain - sum_in) / rounds
    assert ef_error < 0.05 * np.linalg.norm(sum_in) / rounds
    assert ef_error < plain_error / 10


def test_ef_with_public_scale_sends_plus_minus_scale_and_keeps_per_client_state(rng):
    stage = SignBinarize(mode="ef", scale=0.5)
    a = encode(stage, [0.2, -0.2], rng, client=0)
    assert np.array_equal(a, np.array([0.5, -0.5], np.float32))
    assert np.allclose(stage.residual(0), [-0.3, 0.3])
    b = encode(stage, [0.2, -0.2], rng, client=0)  # p = [-0.1, 0.1]: the residual flips the signs
    assert np.array_equal(b, np.array([-0.5, 0.5], np.float32))
    encode(stage, [1.0, 1.0, 1.0], rng, client=1)  # another client, another length: its own memory
    with pytest.raises(ConfigurationError, match="reset"):
        encode(stage, [1.0, 1.0, 1.0], rng, client=0)
    stage.reset()
    assert stage.residual(0) is None and stage.residual(1) is None


def test_value_bounds_hold(rng):
    bound_in = Bounds(linf=1.0, l2=3.0)
    x = np.clip(rng.normal(size=9), -1, 1).astype(np.float32)
    x *= min(1.0, 3.0 / np.linalg.norm(x))
    for stage in (SignBinarize(), SignBinarize("stochastic"), SignBinarize(scale=0.3),
                  SignBinarize("stochastic", scale=0.3), SignBinarize("ef", scale=0.3)):
        bound = stage.value_bound(bound_in)
        out = encode(stage, x, rng)
        assert np.max(np.abs(out)) <= bound.linf
        if math.isfinite(bound.l2):
            assert np.linalg.norm(out) <= bound.l2
    assert SignBinarize(scale=0.3).value_bound(bound_in).linf == pytest.approx(0.3, rel=1e-5)
    assert SignBinarize().value_bound(bound_in).l2 == pytest.approx(3.0, rel=1e-5)
    assert SignBinarize("ef").value_bound(bound_in) == Bounds.UNBOUNDED


def test_bits_measurements_and_identity_decode():
    stage = SignBinarize(scale=0.01).bind(bound_in=Bounds.UNBOUNDED, group_size=3)
    assert stage.bits_per_coordinate == 1
    assert stage.measurements() == {"sign/bits_per_coordinate": 1.0, "sign/scale": 0.01}
    total = np.array([0.03, -0.01, 3.0])
    assert stage.decode(total, count=3) is total


@pytest.mark.parametrize("kwargs", [{"mode": "topk"}, {"scale": 0}, {"scale": -1.0}, {"scale": math.inf},
                                    {"scale": True}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigurationError):
        SignBinarize(**kwargs)


def test_ring_input_is_refused(rng):
    with pytest.raises(ConfigurationError, match="before any ring stage"):
        SignBinarize().encode(Update(0, np.zeros(3, np.uint32)), rng=rng)
