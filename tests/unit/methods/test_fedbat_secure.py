"""Tests of secfl.methods.fedbat.secure: public step sizes, the clients' vectors in alpha units, the server's delta,
and SecureFedBat as a round hook."""

import numpy as np
import pytest

from secfl.exceptions import ConfigurationError
from secfl.fl.models import build_model
from secfl.fl.params import num_params
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.fedbat import FedBatTrainer, SecureFedBat, binarized_segments, fedbat_local_train
from secfl.training import Hyper, Task


def model():
    return build_model("mlp", input_shape=(8,), num_classes=3, seed=0, hidden=6)  # weights 48 + 18, biases 6 + 3


def data(rng, n=64):
    x = rng.normal(size=(n, 8)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


def test_vector_is_m_over_alpha_plus_learned_alphas_and_delta_inverts_it(rng):
    net, (x, y) = model(), data(rng)
    secure = SecureFedBat(net, alpha_init=0.02)
    result = fedbat_local_train(net, x, y, epochs=2, batch_size=16, lr=0.1, seed=1, alpha0=secure.public())
    vector = secure.vector(result)
    d = num_params(net)
    assert vector.dtype == np.float32 and vector.shape == (d + 2,)
    segments = binarized_segments(net)
    for start, stop in segments:
        assert np.allclose(vector[start:stop] * 0.02, result.raw[start:stop], rtol=1e-6)
    rest = np.ones(d, dtype=bool)
    for start, stop in segments:
        rest[start:stop] = False
    assert np.array_equal(vector[:d][rest], result.raw[rest])
    assert vector[d:].tolist() == pytest.approx(list(result.alphas.values()))
    # the server's delta: the mean sign of each layer times this round's alpha; the rest as is
    aggregate = np.concatenate([np.sign(vector[:d]), [0.03, 1e-5]]).astype(np.float64)
    aggregate[:d][rest] = vector[:d][rest]
    delta = secure.delta(aggregate)
    for start, stop in segments:
        assert np.allclose(np.abs(delta[start:stop]), np.float32(0.02))
    assert np.array_equal(delta[rest], aggregate[:d][rest])
    assert secure.public() == {"1.weight": pytest.approx(0.03), "3.weight": pytest.approx(5e-4)}  # clamped to lo


def test_public_alpha0_starts_the_learned_alpha_and_rho_zero_keeps_it(rng):
    net, (x, y) = model(), data(rng)
    alpha0 = {"1.weight": 0.004, "3.weight": 0.03}
    fixed = fedbat_local_train(net, x, y, epochs=2, batch_size=16, lr=0.1, seed=2, rho=0.0, alpha0=alpha0)
    assert fixed.alphas == pytest.approx(alpha0)
    assert np.all(np.abs(fixed.delta[0:48]) == np.float32(0.004))
    learned = fedbat_local_train(net, x, y, epochs=2, batch_size=16, lr=0.1, seed=2, alpha0=alpha0)
    assert learned.alphas != pytest.approx(alpha0)  # rho = 6 moves them from the public start
    own = fedbat_local_train(net, x, y, epochs=2, batch_size=16, lr=0.1, seed=2, rho=0.0)
    assert own.alphas == pytest.approx({k: max(v, 5e-4) for k, v in own.warmup_mean_abs.items()})
    with pytest.raises(ConfigurationError, match="every binarized weight"):
        fedbat_local_train(net, x, y, epochs=1, batch_size=16, lr=0.1, seed=2, alpha0={"1.weight": 0.01})
    with pytest.raises(ConfigurationError, match="finite alpha"):
        fedbat_local_train(net, x, y, epochs=1, batch_size=16, lr=0.1, seed=2,
                           alpha0={"1.weight": 0.01, "3.weight": -1.0})


def test_fixed_update_appends_nothing_and_state_round_trips(rng):
    net = model()
    fixed = SecureFedBat(net, alpha_init=0.01, update="fixed")
    assert fixed.extra == 0
    d = num_params(net)
    fixed.delta(np.zeros(d))
    assert fixed.public() == {"1.weight": pytest.approx(0.01), "3.weight": pytest.approx(0.01)}
    learned = SecureFedBat(net)
    learned.delta(np.append(np.zeros(d), [0.02, np.nan]))  # a non-finite proposal keeps the old alpha
    assert learned.public() == {"1.weight": pytest.approx(0.02), "3.weight": pytest.approx(0.01)}
    again = SecureFedBat(net)
    again.load_state_dict(learned.state_dict())
    assert again.public() == learned.public()
    with pytest.raises(ConfigurationError, match="update"):
        SecureFedBat(net, update="median")
    with pytest.raises(ConfigurationError, match="clamp"):
        SecureFedBat(net, alpha_init=1.0)
    with pytest.raises(ConfigurationError, match="shape"):
        learned.delta(np.zeros(d))
    with pytest.raises(ConfigurationError, match="alphas"):
        again.load_state_dict({"alphas": [0.1]})


def test_as_a_round_hook_it_publishes_the_alphas_maps_vectors_and_deltas_and_reports_the_alphas(rng):
    net, (x, y) = model(), data(rng)
    secure = SecureFedBat(net, alpha_init=0.02)
    assert isinstance(secure, RoundHook)
    ctx = RoundContext(round=1, seed=0, model=net, sampled=[0], data=None, shards=[np.arange(len(y))], pipeline=None)
    secure.before_round(ctx)
    assert ctx.public == {"alpha0": {"1.weight": pytest.approx(0.02), "3.weight": pytest.approx(0.02)}}
    # the client trains with the published alphas (Task.public), as fedbat_local_train(alpha0=...) does
    local = FedBatTrainer().train(Task(net, x, y, 1, Hyper(epochs=2, batch_size=16, lr=0.1), public=ctx.public))
    direct = fedbat_local_train(net, x, y, epochs=2, batch_size=16, lr=0.1, seed=1, alpha0=ctx.public["alpha0"])
    assert np.array_equal(local.delta, direct.delta)
    vector = secure.client_vector(ctx, 0, local, local.delta)
    assert np.array_equal(vector, secure.vector(local.detail)) and vector.shape == (num_params(net) + 2,)
    aggregate = vector.astype(np.float64)
    delta = SecureFedBat(net, alpha_init=0.02).delta(aggregate)
    assert np.array_equal(secure.server_delta(ctx, aggregate), delta)
    assert secure.public() == pytest.approx(local.detail.alphas)  # moved on to the (one client's) learned alphas
    row = {}
    secure.metrics(ctx, row)
    assert row == {"fedbat_alphas": [pytest.approx(0.02), pytest.approx(0.02)]}  # the alphas this round used
