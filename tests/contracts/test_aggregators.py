"""Every aggregator and pre-aggregator: shape, permutation invariance, min_inputs, inputs untouched,
weights honoured (or ignored) as documented, and bucketing over SecAgg+ equal to bucketing in the clear."""

import copy

import numpy as np
import pytest

from secfl import registry
from secfl.aggregators import Chain, Ewwa, FLTrust, MajorityVote, Median, NearestNeighborMixing, StaticClip, TrimmedMean
from secfl.exceptions import IncompatibleStagesError
from secfl.grouping import Buckets, Individual, OneGroup
from secfl.pipeline import Pipeline
from secfl.protocols import SecAggPlus
from secfl.stages import L2Clip, Quantize
from secfl.types import Aggregator, Update


def reference(d):
    return np.linspace(1.0, -1.0, d)


# kind -> factory(d) of a fresh instance (several rules keep state or need d-sized data)
RULES = {kind: (lambda d, cls=cls: cls()) for kind, cls in registry.AGGREGATORS.items()}
RULES["fltrust"] = lambda d: FLTrust(reference(d))
RULES["median-f2"] = lambda d: registry.AGGREGATORS["median"](2)
RULES["trimmed_mean-f1"] = lambda d: registry.AGGREGATORS["trimmed_mean"](1)
RULES["krum-f1"] = lambda d: registry.AGGREGATORS["krum"](1)
RULES["bulyan-f1"] = lambda d: registry.AGGREGATORS["bulyan"](1)
RULES["dnc-f1"] = lambda d: registry.AGGREGATORS["dnc"](1)
RULES["chain"] = lambda d: Chain(TrimmedMean(1), [StaticClip(1.0), NearestNeighborMixing(1)])
PRE = {kind: (lambda d, cls=cls: cls(1.0) if kind == "static_clip" else cls(1))
       for kind, cls in registry.PRE_AGGREGATORS.items()}
# rules whose weights act like multiplicities (integer weight k == the row repeated k times)
MULTIPLICITY = {"mean", "geometric_median", "centered_clip", "majority_vote", "ewwa"}
# rules that ignore weights (rank- or distance-based, or trust-score based)
IGNORE = {"median", "median-f2", "trimmed_mean", "trimmed_mean-f1", "krum", "krum-f1", "bulyan", "bulyan-f1",
          "fltrust", "chain"}


def rows(rule, rng, d=5, extra=3):
    return rng.normal(size=(rule.min_inputs + extra, d))


def test_every_registered_component_is_covered():
    assert set(registry.AGGREGATORS) <= set(RULES) and set(registry.PRE_AGGREGATORS) == set(PRE)
    assert set(RULES) == MULTIPLICITY | IGNORE | {"multi_krum", "dnc", "dnc-f1"}


@pytest.mark.parametrize("kind", sorted(RULES))
def test_capabilities_are_declared(kind):
    rule = RULES[kind](3)
    assert isinstance(rule, Aggregator) and isinstance(rule.min_inputs, int) and rule.min_inputs >= 1
    assert isinstance(rule.takes_ids, bool) and isinstance(rule.needs_reference, bool)
    assert rule.takes_ids == (kind == "ewwa") and not rule.needs_reference  # FLTrust here has a fixed g0
    assert rule.needs_stage is None  # the registry's defaults all combine plain group means
    rule.check_pipeline([L2Clip(1.0)], Individual())
    if kind != "ewwa":  # Ewwa's default (paper) mode needs one client per row
        rule.check_pipeline([L2Clip(1.0)], OneGroup())


@pytest.mark.parametrize("kind", sorted(RULES))
def test_shape_finite_and_permutation_invariance(kind, rng):
    rule = RULES[kind](5)
    x = rows(rule, rng)
    w = rng.uniform(0.5, 2.0, size=x.shape[0])
    order = rng.permutation(x.shape[0])
    out = copy.deepcopy(rule)(x, weights=w)
    assert out.shape == (5,) and out.dtype == np.float64 and np.all(np.isfinite(out))
    assert np.allclose(out, copy.deepcopy(rule)(x[order], weights=w[order]), atol=1e-9)


@pytest.mark.parametrize("kind", sorted(RULES))
def test_min_inputs_enforced(kind, rng):
    rule = RULES[kind](3)
    if rule.min_inputs > 1:
        with pytest.raises(IncompatibleStagesError, match=str(rule.min_inputs)):
            rule(rng.normal(size=(rule.min_inputs - 1, 3)))
    with pytest.raises(IncompatibleStagesError):
        RULES[kind](3)(np.zeros((0, 3)))


@pytest.mark.parametrize("kind", sorted(RULES))
def test_identical_inputs(kind):
    rule = RULES[kind](3)
    x = np.tile(np.array([1.5, -2.0, 0.25]), (max(rule.min_inputs, 3), 1))
    out = rule(x)
    if isinstance(rule, MajorityVote):
        assert np.array_equal(out, np.sign(x[0]))
    elif kind == "chain":  # StaticClip(1) first
        assert np.allclose(out, x[0] / np.linalg.norm(x[0]))
    elif isinstance(rule, FLTrust):  # rescaled to the reference's norm, along the (common) input
        assert np.allclose(out, x[0] / np.linalg.norm(x[0]) * np.linalg.norm(reference(3)))
    else:
        assert np.allclose(out, x[0])


@pytest.mark.parametrize("kind", sorted(RULES) + sorted(PRE))
def test_inputs_never_modified(kind, rng):
    rule = (RULES.get(kind) or PRE[kind])(3)
    x = rows(rule, rng, d=3) * 10  # large enough that clipping acts
    w = np.ones(x.shape[0])
    x0, w0 = x.copy(), w.copy()
    rule(x, weights=w)
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


@pytest.mark.parametrize("kind", sorted(MULTIPLICITY))
def test_integer_weights_act_as_multiplicities(kind, rng):
    rule = RULES[kind](4)
    x = rows(rule, rng, d=4)
    w = np.ones(x.shape[0])
    w[0] = 3.0
    repeated = np.vstack([x, x[0], x[0]])
    assert np.allclose(copy.deepcopy(rule)(x, weights=w), copy.deepcopy(rule)(repeated), atol=1e-7)


@pytest.mark.parametrize("kind", sorted(IGNORE))
def test_rules_that_ignore_weights_do(kind, rng):
    rule = RULES[kind](4)
    x = rows(rule, rng, d=4)
    assert np.allclose(copy.deepcopy(rule)(x, weights=rng.uniform(0.1, 9.0, x.shape[0])), copy.deepcopy(rule)(x))


@pytest.mark.parametrize("kind", sorted(PRE))
def test_pre_aggregators_keep_the_rows(kind, rng):
    pre = PRE[kind](6)
    x = rng.normal(size=(7, 6)) * 5
    out = pre(x)
    assert out.shape == x.shape and np.all(np.isfinite(out))
    order = rng.permutation(7)
    assert np.allclose(pre(x[order]), out[order])
    with pytest.raises(Exception):  # a pre-aggregator is not a rule
        Chain(pre)


@pytest.mark.parametrize("kind", sorted(k for k in RULES if k != "ewwa"))
def test_bucketing_over_secagg_plus_equals_bucketing_in_the_clear(kind, rng):
    d = 16
    buckets = max(5, RULES[kind](d).min_inputs)
    ups = [Update(i, (rng.normal(size=d) * 0.1).astype(np.float32), weight=1.0 + i % 3) for i in range(3 * buckets)]
    stages = [L2Clip(1.0), Quantize(scale=2.0**16)]

    def run(protocol):
        kwargs = {} if protocol is None else {"protocol": protocol}
        pipeline = Pipeline(clients_per_round=len(ups), stages=stages, grouping=Buckets(3), aggregator=RULES[kind](d),
                            **kwargs)
        return pipeline.run_round(ups, rng=np.random.default_rng(11))

    secure, clear = run(SecAggPlus()), run(None)
    assert secure.group_means.shape == (buckets, d)
    assert np.array_equal(secure.result.sums, clear.result.sums)
    assert np.array_equal(secure.aggregate, clear.aggregate)


def test_a_rule_needing_more_buckets_is_refused_with_the_fix():
    with pytest.raises(IncompatibleStagesError, match="buckets"):
        Pipeline(clients_per_round=15, stages=[L2Clip(1.0), Quantize()], protocol=SecAggPlus(), grouping=Buckets(5),
                 aggregator=Median(2))


def test_ewwa_is_invariant_when_ids_follow_the_rows(rng):
    x = rng.normal(size=(5, 4))
    order = rng.permutation(5)
    ids = [10, 11, 12, 13, 14]
    a, b = Ewwa(), Ewwa()
    for _ in range(3):
        assert np.allclose(a(x, ids=ids), b(x[order], ids=[ids[i] for i in order]))
