"""The model binding (``secfl.protocols.binding``): clients that received different models never complete one
secure sum together, whatever models the server hands out (searched)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl import (ConfigurationError, L2Clip, Pipeline, ProtocolError, Quantize, SecAgg, SecAggPlus, Update,
                   model_context)
from secfl.protocols.secagg_instance import Instance

MODELS = [[np.full((2, 3), v, np.float32), np.zeros(3, np.float32)] for v in (0.0, 1.0, 2.0)]
CONTEXTS = [model_context(m) for m in MODELS]


def test_the_context_changes_with_anything_the_client_received():
    base = model_context(MODELS[0])
    assert base == model_context([a.copy() for a in MODELS[0]]) and len(base) == 32
    named = {"w": MODELS[0][0], "b": MODELS[0][1]}
    changed = [model_context(MODELS[1]), model_context(MODELS[0], config=b"lr=0.1"),
               model_context([MODELS[0][0].reshape(3, 2), MODELS[0][1]]),
               model_context([MODELS[0][0].astype(np.float64), MODELS[0][1]]),
               model_context([np.concatenate([MODELS[0][0].ravel(), MODELS[0][1]])]),
               model_context(MODELS[0][:1]), model_context(named), model_context({"b": named["w"], "w": named["b"]}),
               model_context({"w2": named["w"], "b": named["b"]})]
    assert len({base, *changed}) == 1 + len(changed)
    assert model_context(named) == model_context(dict(named))  # the round is not in it: the instance binds it


@pytest.mark.parametrize("bad", [{"config": 1}, {"arrays": [np.array(["a"])]}, {"arrays": {1: np.zeros(2)}}])
def test_bad_input_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError):
        model_context(**{"arrays": MODELS[0], **bad})


def test_an_instance_context_is_empty_or_32_bytes_and_changes_the_digest():
    plain = Instance(b"s" * 16, 1, 0, (0, 1, 2))
    bound = Instance(b"s" * 16, 1, 0, (0, 1, 2), CONTEXTS[0])
    assert len({plain.digest, bound.digest, Instance(b"s" * 16, 1, 0, (0, 1, 2), CONTEXTS[1]).digest}) == 3
    with pytest.raises(ConfigurationError):
        Instance(b"s" * 16, 1, 0, (0, 1, 2), b"short")


def _round(protocol, models: list[int], bound: bool):
    """One group of len(models) clients; client c trained on model models[c]. The inconsistency attack's
    updates: a client on model 0 (the target's model) sends its input, a client on another model sends 0."""
    n = len(models)
    updates = [Update(c, np.full(4, 1000 + c if models[c] == 0 else 0, np.uint32)) for c in range(n)]
    contexts = {c: CONTEXTS[models[c]] for c in range(n)} if bound else None
    return protocol.run(updates, groups=[list(range(n))], contexts=contexts)


@settings(max_examples=40, deadline=None)
@given(models=st.lists(st.integers(0, 2), min_size=4, max_size=7), complete=st.booleans())
def test_a_released_sum_never_mixes_clients_of_different_models(models, complete):
    """The server hands out any of 3 models to any member. Bound: every sum that is released covers
    members of ONE model (a target alone on its model is excluded, or the group fails). The same search
    against unbound clients finds the inconsistency attack (asserted below, so this test can fail)."""
    protocol = SecAgg() if complete else SecAggPlus()
    try:
        result = _round(protocol, models, bound=True)
    except ProtocolError:
        return  # refused: nothing released
    survivors = result.survivors[0]
    assert len({models[c] for c in survivors}) == 1


def test_unbound_clients_fall_to_the_inconsistency_attack_and_bound_ones_do_not():
    """One target on the real model, 4 others on a model whose update is zero: unbound, the "sum" of 5 is
    the target's input; bound, the target is excluded and its input is in no released sum."""
    models = [0, 1, 1, 1, 1]
    unbound = _round(SecAggPlus(), models, bound=False)
    assert unbound.survivors[0] == (0, 1, 2, 3, 4) and list(unbound.sums[0]) == [1000] * 4  # the target's input
    bound = _round(SecAggPlus(), models, bound=True)
    assert 0 not in bound.survivors[0] and list(bound.sums[0]) == [0] * 4


def test_a_pipeline_binds_under_secagg_and_ignores_contexts_elsewhere():
    from secfl import OneGroup, Plaintext

    rng = np.random.default_rng(0)
    updates = [Update(c, np.full(3, 0.1 * (c + 1), np.float32)) for c in range(5)]
    contexts = {c: CONTEXTS[1 if c == 0 else 0] for c in range(5)}
    secure = Pipeline(clients_per_round=5, stages=[L2Clip(norm=1.0), Quantize(scale=2.0**16)], protocol=SecAggPlus(),
                      grouping=OneGroup())
    out = secure.run_round(updates, rng=rng, contexts=contexts)
    assert out.result.survivors == ((1, 2, 3, 4),)
    plain = Pipeline(clients_per_round=5, stages=[], protocol=Plaintext(), grouping=OneGroup())
    assert plain.run_round(updates, rng=rng, contexts=contexts).result.survivors == ((0, 1, 2, 3, 4),)
