"""Hypothesis properties: clipped norm <= C, quantization error <= step, ring sums never wrap."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from secfl.grouping import OneGroup
from secfl.pipeline import Pipeline
from secfl.stages import L2Clip, Quantize
from secfl.types import Bounds, Update

finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
vectors = hnp.arrays(np.float32, st.integers(1, 40), elements=finite)


@settings(max_examples=200, deadline=None)
@given(vectors, st.floats(1e-3, 1e3))
def test_clipped_norm_at_most_c(x, c):
    out = L2Clip(c).encode(Update(0, x), rng=np.random.default_rng(0)).values
    assert np.linalg.norm(out.astype(np.float64)) <= c * (1 + 2.0**-20)


@settings(max_examples=200, deadline=None)
@given(vectors, st.integers(0, 20), st.integers(0, 2**32 - 1))
def test_quantization_error_at_most_one_step(x, log_scale, seed):
    scale = 2.0**log_scale
    stage = Quantize(scale=scale, bound=1e6).bind(bound_in=Bounds.UNBOUNDED, group_size=1)
    out = stage.decode(stage.encode(Update(0, x), rng=np.random.default_rng(seed)).values, count=1)
    assert np.all(np.abs(out - x.astype(np.float64)) <= 1.0 / scale)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.floats(1e-2, 1e2),
    st.integers(0, 24),
    st.integers(0, 2**32 - 1),
)
def test_ring_sums_never_wrap_under_derived_bounds(n, clip, log_scale, seed):
    rng = np.random.default_rng(seed)
    # worst case: every client sends the extreme value on every coordinate, same sign
    sign = rng.choice([-1.0, 1.0], size=5)
    ups = [Update(i, (sign * clip * 10).astype(np.float32)) for i in range(n)]
    pipeline = Pipeline(clients_per_round=n, stages=[L2Clip(clip), Quantize(scale=2.0**log_scale)], grouping=OneGroup())
    out = pipeline.run_round(ups, rng=rng)
    expected = sign * clip / np.sqrt(5)  # every clipped vector is the same
    assert np.all(np.abs(out.aggregate - expected) <= 1.0 / 2.0**log_scale + 1e-6 * clip)
