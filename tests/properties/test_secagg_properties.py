"""Hypothesis: masks cancel for any survivor set the protocol accepts; too few survivors abort."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from secfl.exceptions import InsufficientParticipantsError
from secfl.protocols import Plaintext, SecAgg, SecAggPlus
from secfl.types import DropoutSchedule, Update

STAGES = SecAgg.stages
CUT = STAGES.index("masked_input")


@st.composite
def rounds(draw):
    n = draw(st.integers(3, 11))
    d = draw(st.integers(1, 16))
    sparse = draw(st.booleans()) and n >= 7
    protocol = SecAggPlus(neighbours=4, dropout_rate=0.0) if sparse else draw(st.sampled_from([SecAgg(), SecAggPlus()]))
    words = draw(st.sampled_from([np.uint32, np.uint64]))
    seed = draw(st.integers(0, 2**32 - 1))
    order = draw(st.permutations(list(range(n))))
    cuts = sorted(draw(st.lists(st.integers(1, n - 1), max_size=2, unique=True)))
    groups = [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, n])]
    groups = [g for g in groups if g] if all(len(g) >= 3 for g in groups) else [list(order)]
    schedule = draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(STAGES), max_size=n))
    return protocol, n, d, words, seed, groups, schedule


@settings(max_examples=60, deadline=None)
@given(rounds())
def test_sums_equal_plaintext_or_the_round_aborts(case):
    protocol, n, d, words, seed, groups, schedule = case
    rng = np.random.default_rng(seed)
    ups = [Update(i, rng.integers(0, np.iinfo(words).max, size=d, dtype=words, endpoint=True)) for i in range(n)]
    in_sum = {c: s for c, s in schedule.items() if STAGES.index(s) <= CUT}
    try:
        result = protocol.run(ups, groups=groups, dropouts=DropoutSchedule(schedule))
    except InsufficientParticipantsError:
        # an abort is only allowed when some group lost more clients than k - t (a client's
        # neighbours minus the shares needed): with fewer losses every secret stays recoverable
        assert any(sum(c in schedule for c in g) > protocol.params(len(g)).neighbours - protocol.params(len(g)).threshold
                   for g in groups)
        return
    expected = Plaintext().run(ups, groups=groups, dropouts=DropoutSchedule({c: "upload" for c in in_sum}))
    assert np.array_equal(result.sums, expected.sums)
    for group, alive in zip(groups, result.survivors):
        assert len(alive) >= protocol.params(len(group)).threshold  # never a sum over fewer than t


@settings(max_examples=20, deadline=None)
@given(st.integers(3, 9), st.integers(0, 2**32 - 1))
def test_fewer_survivors_than_threshold_always_abort(n, seed):
    protocol = SecAgg()
    t = protocol.params(n).threshold
    rng = np.random.default_rng(seed)
    ups = [Update(i, rng.integers(0, 2**32, size=3, dtype=np.uint32)) for i in range(n)]
    stages = rng.choice(STAGES[: CUT + 1], size=n - t + 1)
    schedule = {int(c): str(s) for c, s in zip(rng.permutation(n)[: n - t + 1], stages)}
    try:
        protocol.run(ups, groups=[list(range(n))], dropouts=DropoutSchedule(schedule))
    except InsufficientParticipantsError:
        return
    raise AssertionError("a sum over fewer than t inputs was released")
