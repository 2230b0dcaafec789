import math

import numpy as np
import pytest

from secfl.aggregators.ewwa import Ewwa, check_pairing
from secfl.aggregators.mean import Mean
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.grouping import Buckets, Individual, OneGroup
from secfl.stages.clip import L2Clip
from secfl.stages.ewwa import EwwaContribution
from secfl.stages.quantize import Quantize
from secfl.types import Bounds, Update

B1, B2, EPS = 0.9, 0.999, 1e-8


# ---------------------------------------------------------------- slow references (explicit loops, per element)

def ref_second_moment(variant, v, g):
    if variant == "adam":
        return B2 * v + (1 - B2) * g * g
    if variant == "adagrad":
        return v + g * g
    sign = (v > g * g) - (v < g * g)
    return v - (1 - B2) * g * g * sign


class RefPaper:
    def __init__(self, variant="adam", scale=1.0):
        self.variant, self.scale, self.state = variant, scale, {}

    def __call__(self, x, weights=None, ids=None):
        n, d = len(x), len(x[0])
        ids = list(range(n)) if ids is None else list(ids)
        weights = [1.0] * n if weights is None else list(weights)
        b = [[0.0] * d for _ in range(n)]
        for i, cid in enumerate(ids):
            m, v, t = self.state.get(cid, ([0.0] * d, [0.0] * d, 0))
            m, v, t = list(m), list(v), t + 1
            for j in range(d):
                g = -float(x[i][j])
                m[j] = B1 * m[j] + (1 - B1) * g
                v[j] = ref_second_moment(self.variant, v[j], g)
                m_hat = m[j] / (1 - B1**t)
                v_hat = v[j] if self.variant == "adagrad" else v[j] / (1 - B2**t)
                b[i][j] = self.scale * m_hat / (math.sqrt(v_hat) + EPS)
            self.state[cid] = (m, v, t)
        out = []
        for j in range(d):
            num = sum(weights[i] * math.exp(b[i][j]) * float(x[i][j]) for i in range(n))
            den = sum(weights[i] * math.exp(b[i][j]) for i in range(n))
            out.append(num / den)
        return np.array(out)


class RefCode:
    def __init__(self, variant="adam", scale=1.0):
        self.variant, self.scale, self.round, self.m, self.v = variant, scale, 0, None, None

    def __call__(self, x, weights=None):
        n, d = len(x), len(x[0])
        weights = [1.0] * n if weights is None else list(weights)
        m = [0.0] * d if self.m is None else list(self.m)
        v = [0.0] * d if self.v is None else list(self.v)
        r = self.round
        s = self.scale * math.sqrt(1 - B2 ** (r + 1)) / (1 - B1 ** (r + 1))
        g_hat = [[0.0] * d for _ in range(n)]
        for k in range(n):
            for j in range(d):
                g = -float(x[k][j])
                m[j] = B1 * m[j] + (1 - B1) * g
                v[j] = ref_second_moment(self.variant, v[j], g)
                g_hat[k][j] = s * m[j] / (math.sqrt(v[j]) + EPS)
        c_min = min(min(row) for row in g_hat)
        out = []
        for j in range(d):
            e = [weights[k] * (math.log(g_hat[k][j] - c_min + 1) + 1e-8) for k in range(n)]
            out.append(sum(e[k] * float(x[k][j]) for k in range(n)) / sum(e))
        self.m, self.v, self.round = m, v, r + 1
        return np.array(out)


# ---------------------------------------------------------------- paper mode

def test_identical_clients_give_the_mean_every_round(rng):
    rule = Ewwa()
    for _ in range(4):
        x = np.tile(rng.normal(size=6), (5, 1))
        np.testing.assert_allclose(rule(x), Mean()(x), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(rule.last_ratios, 0.2, rtol=1e-13)
    w = rng.uniform(0.5, 2.0, size=5)
    x = np.tile(rng.normal(size=6), (5, 1))
    np.testing.assert_allclose(Ewwa()(x, weights=w), Mean()(x, weights=w), rtol=1e-13)


def test_different_clients_give_an_elementwise_convex_combination_not_the_mean(rng):
    rule = Ewwa()
    for _ in range(3):
        x = rng.normal(size=(4, 20))
        out = rule(x)
        assert np.all(out >= x.min(axis=0) - 1e-12) and np.all(out <= x.max(axis=0) + 1e-12)
        assert np.max(np.abs(out - x.mean(axis=0))) > 1e-2
        np.testing.assert_allclose(rule.last_ratios.sum(axis=0), 1.0, rtol=1e-12)
        assert np.all(rule.last_ratios > 0)


def test_linear_probe_weights_sum_to_one(rng):
    # In a first round b = g / (|g| + eps) ~ sign(g): shifting every input by c without flipping a
    # sign keeps the weights (to ~1e-8), so out(x + c) - out(x) = c * sum_c p_c must equal c.
    x = rng.uniform(0.5, 1.5, size=(5, 30)) * rng.choice([-1.0, 1.0], size=(5, 30))
    w = rng.uniform(0.5, 2.0, size=5)
    for weights in (None, w):
        shift = Ewwa()(x + 0.1, weights=weights) - Ewwa()(x, weights=weights)
        np.testing.assert_allclose(shift, 0.1, atol=1e-6)


def test_sign_asymmetry_favours_decreases():
    # one client decreases an element, another increases it by the same amount: the decrease wins
    out = Ewwa()(np.array([[-1.0], [1.0]]))
    assert out[0] < -0.5


@pytest.mark.parametrize("variant", ["adam", "adagrad", "yogi"])
@pytest.mark.parametrize("weighted", [False, True])
def test_paper_mode_matches_slow_reference(rng, variant, weighted):
    rule, ref = Ewwa(variant=variant, scale=1.5), RefPaper(variant, scale=1.5)
    for ids in ([0, 1, 2], [2, 0, 5], [1, 5, 0, 9]):  # partial participation, a new id each round
        x = rng.normal(size=(len(ids), 4))
        w = rng.uniform(0.5, 2.0, size=len(ids)) if weighted else None
        np.testing.assert_allclose(rule(x, weights=w, ids=ids), ref(x, weights=w, ids=ids), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["adam", "adagrad", "yogi"])
@pytest.mark.parametrize("weighted", [False, True])
def test_code_mode_matches_slow_reference(rng, variant, weighted):
    rule, ref = Ewwa(mode="code", variant=variant, scale=1.5), RefCode(variant, scale=1.5)
    for _ in range(3):
        x = rng.normal(size=(3, 4))
        w = rng.uniform(0.5, 2.0, size=3) if weighted else None
        out = rule(x, weights=w)
        np.testing.assert_allclose(out, ref(x, weights=w), rtol=1e-10, atol=1e-12)
        assert np.all(out >= x.min(axis=0) - 1e-12) and np.all(out <= x.max(axis=0) + 1e-12)
        np.testing.assert_allclose(rule.last_ratios.sum(axis=0), 1.0, rtol=1e-12)


def test_code_mode_depends_on_order_and_not_on_ids(rng):
    x = np.tile(rng.normal(size=5), (3, 1))
    rule = Ewwa(mode="code")
    rule(x)
    assert not np.allclose(rule.last_ratios, 1 / 3)  # identical clients, different weights (shared moments)
    y = rng.normal(size=(3, 5))
    assert not np.allclose(Ewwa(mode="code")(y), Ewwa(mode="code")(y[::-1]))
    np.testing.assert_array_equal(Ewwa(mode="code")(y, ids=[7, 8, 9]), Ewwa(mode="code")(y))


# ---------------------------------------------------------------- secure mode (EwwaContribution), no pipeline

def client_vectors(stage, x, ids, r, rng):
    """What each client hands the secure sum inside a Pipeline: [r e x, r e, r] (float32)."""
    out = []
    for row, cid, weight in zip(x, ids, r):
        encoded = stage.encode(Update(cid, row.astype(np.float32)), rng=rng).values
        assert encoded.dtype == np.float32 and encoded.size == 2 * x.shape[1]
        out.append(np.append(encoded.astype(np.float64) * weight, weight).astype(np.float32).astype(np.float64))
    return np.stack(out)


def secure_mean(stage, vectors):
    decoded = stage.decode(vectors.sum(axis=0), count=vectors.shape[0])
    assert decoded.size == (vectors.shape[1] - 1) // 2 + 1
    return decoded[:-1] / decoded[-1]


@pytest.mark.parametrize("bound", [3.0, 10.0])  # |b| <= 1.01 over these rounds: nothing is clipped
@pytest.mark.parametrize("weighted", [False, True])
def test_secure_sum_equals_paper_mode(rng, bound, weighted):
    ids, d, quantum = [3, 8, 11], 16, 2.0**-20
    stage, rule = EwwaContribution(bound=bound), Ewwa()
    for _ in range(3):
        x = rng.normal(size=(3, d)).astype(np.float32).astype(np.float64)
        w = rng.uniform(0.5, 2.0, size=3) if weighted else np.ones(3)
        r = w / w.max()  # the pipeline's relative weights
        expected = rule(x, weights=w if weighted else None, ids=ids)
        vectors = client_vectors(stage, x, ids, r, rng)
        scale_x = np.abs(x).max()
        np.testing.assert_allclose(secure_mean(stage, vectors), expected, rtol=1e-6, atol=1e-6 * scale_x)
        assert np.max(np.abs(expected - x.mean(axis=0))) > 1e-3
        # fixed point: every coordinate of every client's vector rounded to the 2^-20 grid (error h = 2^-21).
        # With N' = N + dN, D' = D + dD, |dN|, |dD| <= K h and D >= K r_min e_min:
        # |N'/D' - N/D| <= h (1 + max|x|) / (r_min e_min - h), plus the float32 term above.
        quantized = np.round(vectors / quantum) * quantum
        e_min = (vectors[:, d:2 * d] / r[:, None]).min()
        h = quantum / 2
        tolerance = h * (1 + scale_x) / (r.min() * e_min - h) + 1e-6 * scale_x
        assert np.max(np.abs(secure_mean(stage, quantized) - expected)) <= tolerance
    assert bound != 3.0 or tolerance < 1e-3  # a small bound keeps fixed point precise


def test_contribution_is_clipped_and_bounded(rng):
    stage = EwwaContribution(bound=0.5)
    x = rng.normal(size=(4, 10))
    vectors = client_vectors(stage, x, range(4), np.ones(4), rng)
    e = vectors[:, 10:20]
    assert np.all(e >= np.float32(math.exp(-1.0))) and np.all(e <= 1.0)
    # |b| ~ 1 in a first round: clipping to 0.5 changes the weights compared with paper mode
    assert not np.allclose(secure_mean(stage, vectors), Ewwa()(x, ids=range(4)), atol=1e-4)
    assert stage.value_bound(Bounds(linf=0.3, l2=1.0)) == Bounds(linf=1.0, l2=math.inf)
    assert stage.value_bound(Bounds(linf=4.0, l2=5.0)).linf == 4.0
    assert stage.value_bound(Bounds.UNBOUNDED).linf == math.inf
    assert stage.output == "real" and stage.name == "ewwa"
    assert stage.for_group(3) is stage and stage.bind(bound_in=Bounds(), group_size=3) is stage


def test_decode_outside_a_pipeline_and_its_guard():
    stage = EwwaContribution()
    np.testing.assert_allclose(stage.decode(np.array([2.0, -1.0, 4.0, 2.0]), count=2), [0.5, -0.5])
    np.testing.assert_allclose(stage.decode(np.array([2.0, -1.0, 4.0, 2.0, 3.0]), count=2), [1.5, -1.5, 3.0])
    with pytest.raises(ConfigurationError, match="lower bound or raise the quantization scale"):
        stage.decode(np.array([2.0, 1.0, 4.0, 0.0, 3.0]), count=2)
    with pytest.raises(ConfigurationError):
        stage.decode(np.array([1.0]), count=1)


def test_secure_mode_aggregator_is_a_weighted_mean(rng):
    x, w = rng.normal(size=(4, 6)), rng.uniform(0.5, 2.0, size=4)
    rule = Ewwa(mode="secure")
    np.testing.assert_allclose(rule(x, weights=w), Mean()(x, weights=w), rtol=1e-14)
    np.testing.assert_allclose(rule(x[:, :3]), Mean()(x[:, :3]), rtol=1e-14)  # stateless
    assert rule.last_ratios is None


def test_pairing_of_stage_and_secure_mode():
    stage, secure = EwwaContribution(), Ewwa(mode="secure")
    secure.check_stages([L2Clip(1.0), stage, Quantize()])
    check_pairing([L2Clip(1.0), stage, Quantize()], secure, grouping=OneGroup())
    check_pairing([stage], secure, grouping=Buckets(3))
    check_pairing([L2Clip(1.0)], Ewwa(), grouping=Individual())
    check_pairing([L2Clip(1.0)], Mean(), grouping=OneGroup())
    with pytest.raises(ConfigurationError, match="EwwaContribution"):
        secure.check_stages([L2Clip(1.0), Quantize()])
    for rule in (Mean(), Ewwa(), Ewwa(mode="code")):
        with pytest.raises(IncompatibleStagesError, match="mode='secure'"):
            check_pairing([stage], rule)
    with pytest.raises(IncompatibleStagesError, match="more than once"):
        check_pairing([stage, EwwaContribution()], secure)
    with pytest.raises(IncompatibleStagesError, match="FedAvg"):
        check_pairing([stage], secure, grouping=Individual())
    with pytest.raises(IncompatibleStagesError, match="Individual"):
        check_pairing([], Ewwa(), grouping=OneGroup())


def test_pairing_is_declared_and_checked_by_each_component():
    stage, secure = EwwaContribution(), Ewwa(mode="secure")
    assert secure.needs_stage == "ewwa" == stage.name and Ewwa().needs_stage is None
    assert Ewwa().takes_ids and Ewwa(mode="code").takes_ids and not Mean().takes_ids
    stage.check_pipeline([stage], secure, OneGroup())
    secure.check_pipeline([stage], OneGroup())
    with pytest.raises(IncompatibleStagesError, match="mode='secure'"):
        stage.check_pipeline([stage], Ewwa(), Individual())
    with pytest.raises(IncompatibleStagesError, match="more than once"):
        stage.check_pipeline([stage, stage], secure)
    with pytest.raises(IncompatibleStagesError, match="EwwaContribution"):
        secure.check_pipeline([L2Clip(1.0)])
    with pytest.raises(IncompatibleStagesError, match="FedAvg"):
        secure.check_pipeline([stage], Individual())
    Ewwa(mode="code").check_pipeline([], Individual())
    Ewwa().check_pipeline([], None)  # no grouping: the stages only


# ---------------------------------------------------------------- state

def test_instances_do_not_share_state(rng):
    first, second = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    a, twin = Ewwa(), Ewwa()
    a(first), twin(first)
    b = Ewwa()
    np.testing.assert_array_equal(b(second), Ewwa()(second))  # b is fresh despite a's history
    np.testing.assert_array_equal(a(second), twin(second))  # a is untouched by b's call
    assert not np.allclose(a.last_ratios, b.last_ratios)  # a's history matters

    s1, s2 = EwwaContribution(), EwwaContribution()
    s1.encode(Update(0, first[0].astype(np.float32)), rng=rng)
    np.testing.assert_array_equal(s2.encode(Update(0, second[0].astype(np.float32)), rng=rng).values,
                                  EwwaContribution().encode(Update(0, second[0].astype(np.float32)), rng=rng).values)


def test_unseen_ids_start_from_zero_moments(rng):
    rule = Ewwa()
    for _ in range(3):
        rule(rng.normal(size=(3, 4)), ids=[0, 1, 2])
    x = rng.normal(size=(2, 4))
    np.testing.assert_array_equal(rule(x, ids=[5, 6]), Ewwa()(x, ids=[5, 6]))
    assert not np.allclose(Ewwa()(x, ids=[0, 1]), rule(x, ids=[0, 1]))  # known ids use their history
    np.testing.assert_array_equal(Ewwa()(x), Ewwa()(x, ids=[0, 1]))  # default ids: the row index
    rule.reset()
    np.testing.assert_array_equal(rule(x, ids=[0, 1]), Ewwa()(x, ids=[0, 1]))


def test_failed_call_leaves_state_unchanged(rng):
    rule, twin = Ewwa(), Ewwa()
    x = rng.normal(size=(2, 3))
    rule(x), twin(x)
    with pytest.raises(ConfigurationError):
        rule(x, ids=[0, 0])
    with pytest.raises(ConfigurationError):
        rule(rng.normal(size=(2, 4)))  # another vector length: another run
    np.testing.assert_array_equal(rule(x), twin(x))


# ---------------------------------------------------------------- arguments and inputs

@pytest.mark.parametrize("kwargs", [
    {"mode": "fedavg"}, {"beta1": 1.0}, {"beta1": -0.1}, {"beta1": True}, {"beta2": 1.0}, {"beta2": "0.9"},
    {"eps": 0.0}, {"eps": math.inf}, {"scale": 0.0}, {"scale": -1.0}, {"scale": math.nan}, {"variant": "sgd"},
])
def test_bad_hyperparameters(kwargs):
    stage_kwargs = {k: v for k, v in kwargs.items() if k != "mode"}
    with pytest.raises(ConfigurationError):
        Ewwa(**kwargs)
    if stage_kwargs:
        with pytest.raises(ConfigurationError):
            EwwaContribution(**stage_kwargs)


@pytest.mark.parametrize("bound", [0, -1.0, math.inf, math.nan, 41.0, "5", True])
def test_bad_bound(bound):
    with pytest.raises(ConfigurationError):
        EwwaContribution(bound=bound)


@pytest.mark.parametrize("mode", ["paper", "code", "secure"])
@pytest.mark.parametrize("x, w, ids", [
    (np.zeros(3), None, None),
    (np.array([[np.nan, 1.0]]), None, None),
    (np.ones((2, 2)), np.array([1.0, 0.0]), None),
    (np.ones((2, 2)), None, [0]),
    (np.ones((2, 2)), None, [1, 1]),
    (np.ones((2, 2)), None, [[0], [1]]),
])
def test_bad_inputs(mode, x, w, ids):
    with pytest.raises(ConfigurationError):
        Ewwa(mode=mode)(x, weights=w, ids=ids)


def test_too_few_inputs():
    with pytest.raises(IncompatibleStagesError):
        Ewwa()(np.zeros((0, 3)))


def test_stage_rejects_ring_input_and_length_change(rng):
    stage = EwwaContribution()
    with pytest.raises(ConfigurationError, match="before Quantize"):
        stage.encode(Update(0, np.zeros(3, np.uint32)), rng=rng)
    stage.encode(Update(0, np.ones(3, np.float32)), rng=rng)
    with pytest.raises(ConfigurationError, match="length"):
        stage.encode(Update(0, np.ones(4, np.float32)), rng=rng)
    stage.encode(Update(1, np.ones(4, np.float32)), rng=rng)  # another client, its own state


@pytest.mark.parametrize("mode", ["paper", "code", "secure"])
def test_inputs_never_modified(rng, mode):
    x, w, ids = rng.normal(size=(4, 3)), rng.uniform(0.5, 2, size=4), [4, 3, 2, 1]
    x0, w0 = x.copy(), w.copy()
    rule = Ewwa(mode=mode)
    for _ in range(2):
        rule(x, weights=w, ids=ids)
    assert np.array_equal(x, x0) and np.array_equal(w, w0) and ids == [4, 3, 2, 1]

    stage = EwwaContribution()
    values = rng.normal(size=5).astype(np.float32)
    values0 = values.copy()
    stage.encode(Update(0, values), rng=rng)
    total = np.array([1.0, 2.0, 3.0, 4.0, 2.0])
    total0 = total.copy()
    stage.decode(total, count=2)
    assert np.array_equal(values, values0) and np.array_equal(total, total0)
