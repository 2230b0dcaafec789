import numpy as np
import pytest

from secfl import registry
from secfl.aggregators import Mean, Median, TrimmedMean
from secfl.attacks import Adaptive, ALittleIsEnough, InnerProductManipulation, Mimic, build_attack
from secfl.exceptions import ConfigurationError

F = 4


class Counting:
    """Wraps an aggregator and counts its calls."""

    def __init__(self, rule):
        self.rule, self.calls = rule, 0

    def __call__(self, vectors):
        self.calls += 1
        return self.rule(vectors)


def honest_set(seed=0, n=16, d=10):
    return np.random.default_rng(seed).normal(size=(n, d)) + 0.5


def damage(rule, honest, byzantine):
    return np.linalg.norm(rule(np.vstack([honest, byzantine])) - honest.mean(axis=0))


RULES = {
    "median": lambda: registry.build("aggregator", {"kind": "median", "num_byzantine": F}),
    "trimmed_mean": lambda: TrimmedMean(F),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("base", [{"kind": "alie"}, {"kind": "alie", "z": 1.5}, {"kind": "ipm"}, {"kind": "sign_flip"},
                                  {"kind": "min_max"}, {"kind": "min_sum"}, {"kind": "large_norm"}])
def test_at_least_as_damaging_as_the_base_attack_within_budget(rule, base):
    honest, aggregator = honest_set(), Counting(RULES[rule]())
    result = Adaptive(base, budget=20).search(honest, num_byzantine=F, rng=np.random.default_rng(0),
                                              aggregator=aggregator)
    plain = build_attack(base)(honest, num_byzantine=F, rng=np.random.default_rng(0))
    assert result.damage >= damage(RULES[rule](), honest, plain) - 1e-12
    assert result.damage == pytest.approx(damage(RULES[rule](), honest, result.vectors))
    assert aggregator.calls == result.evaluations <= 20


def test_strictly_better_than_the_formula_alie_against_trimmed_mean():
    honest = honest_set()
    plain = ALittleIsEnough()(honest, num_byzantine=F, rng=np.random.default_rng(0))
    out = Adaptive("alie")(honest, num_byzantine=F, rng=np.random.default_rng(0), aggregator=TrimmedMean(F))
    assert damage(TrimmedMean(F), honest, out) > 1.5 * damage(TrimmedMean(F), honest, plain)


@pytest.mark.parametrize("budget", [4, 5, 9, 30, 31])
def test_never_calls_the_aggregator_more_than_its_budget(budget):
    aggregator = Counting(Median(F))
    result = Adaptive("ipm", budget=budget).search(honest_set(), num_byzantine=F, rng=np.random.default_rng(0),
                                                   aggregator=aggregator)
    assert aggregator.calls == result.evaluations <= budget
    assert aggregator.calls >= budget - 1  # the budget is used, not wasted


def test_against_the_mean_the_search_goes_to_the_top_of_the_range():
    # damage grows with epsilon against the plain mean: the best strength is the upper end of [eps/100, eps*100]
    result = Adaptive(InnerProductManipulation(0.1)).search(honest_set(), num_byzantine=F,
                                                            rng=np.random.default_rng(0), aggregator=Mean())
    assert result.strength == pytest.approx(10.0)


def test_explicit_range_and_golden_refinement_find_an_interior_optimum():
    # damage(s) = -(s - 3)^2: grid + golden section should land close to s = 3
    honest = np.zeros((3, 1))
    honest[:, 0] = [1.0, 1.0, 1.0]

    def aggregator(vectors):  # vectors[-1] = -s * mean(honest) = -s; damage = ||agg - 1||
        s = -vectors[-1, 0]
        return np.array([1.0 + max(0.0, 9.0 - (s - 3.0) ** 2)])

    result = Adaptive("ipm", budget=30, low=0.5, high=20.0).search(honest, num_byzantine=1,
                                                                  rng=np.random.default_rng(0), aggregator=aggregator)
    assert result.strength == pytest.approx(3.0, abs=0.05)


def test_inner_product_objective_minimises_the_inner_product_with_the_honest_mean():
    honest = honest_set(1)
    mean = honest.mean(axis=0)
    plain = ALittleIsEnough()(honest, num_byzantine=F, rng=np.random.default_rng(0))
    out = Adaptive("alie", objective="inner_product")(honest, num_byzantine=F, rng=np.random.default_rng(0),
                                                      aggregator=Median(F))
    assert Median(F)(np.vstack([honest, out])) @ mean <= Median(F)(np.vstack([honest, plain])) @ mean


def test_the_aggregator_sees_honest_rows_first_then_the_byzantine_rows():
    honest = honest_set(2, n=5, d=3)
    seen = []
    Adaptive("sign_flip", budget=4)(honest, num_byzantine=2, rng=np.random.default_rng(0),
                                    aggregator=lambda x: seen.append(x.copy()) or x.mean(axis=0))
    assert all(x.shape == (7, 3) and np.array_equal(x[:5], honest) for x in seen)


def test_needs_an_aggregator():
    with pytest.raises(ConfigurationError, match="aggregator"):
        Adaptive("alie")(honest_set(), num_byzantine=F, rng=np.random.default_rng(0))


def test_deterministic_for_equal_rng_and_inputs_untouched():
    honest = honest_set(3)
    before = honest.copy()
    attack = Adaptive({"kind": "gaussian", "sigma": 0.5}, budget=10)
    a = attack(honest, num_byzantine=F, rng=np.random.default_rng(9), aggregator=TrimmedMean(F))
    b = attack(honest, num_byzantine=F, rng=np.random.default_rng(9), aggregator=TrimmedMean(F))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(honest, before)


@pytest.mark.parametrize("attack", ["mimic", Mimic(), {"kind": "adaptive"}, Adaptive(), "nope",
                                    {"kind": "alie", "q": 1}, 3, None])
def test_bad_base_attack(attack):
    with pytest.raises(ConfigurationError):
        Adaptive(attack)


@pytest.mark.parametrize("options", [{"budget": 3}, {"budget": 1001}, {"budget": 10.0}, {"objective": "loss"},
                                     {"low": 0.0}, {"low": 2.0, "high": 1.0}, {"span": 1.0}, {"high": -1.0}])
def test_bad_options(options):
    with pytest.raises(ConfigurationError):
        Adaptive("ipm", **options)


def test_empty_range_at_call_time():
    with pytest.raises(ConfigurationError, match="low < high"):
        Adaptive("ipm", low=50.0)(honest_set(), num_byzantine=F, rng=np.random.default_rng(0), aggregator=Mean())
