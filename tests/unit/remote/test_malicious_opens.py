"""A malicious server's round openings, searched (hypothesis stateful).

The server chooses every field of every client's ``open``: the relative weight, the encoding seed, the
session; it replays openings of earlier rounds, leaves a client out of a round, and sends a model it already
sent in an earlier round (with deterministic training, the same updates again). Deployed clients
(``simulation=False``) must make that worthless: in every round that completes, the sum is the survivors'
inputs weighted by the weights the CLIENTS computed (``min(w, cap) / cap``), whatever the server sent; an
update computed from one model enters at most one released sum (else two sums, one without the target,
differ by the target's update).

Before the fix a client used the server's ``relative_weight``: a server that sent 1 to a target and 1e-9 to
everyone else received the target's input as the group's "mean"; and a client keyed its input on the
server's task and round, so the same model in a new round was summed again. This machine finds both in a few
examples (the aggregate differs from the clients' own weighting; a (client, model) pair in two sums).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, rule
from test_remote import CAP, Fleet, make_pipeline, reframe, survivors, updates

from secfl import ProtocolError, model_context
from secfl.hazmat.randomness import OS_RANDOM

N = 4
PIPELINE = make_pipeline(N)  # SecAgg+ over one group of 4, public weight cap CAP

forged_weight = st.one_of(st.none(), st.sampled_from([1.0, 1e-9, 1e-3, 0.5]), st.floats(1e-12, 1.0))
forged_seed = st.one_of(st.none(), st.tuples(st.integers(0, 2**64 - 1), st.lists(st.integers(0, 7), max_size=2)))


class MaliciousOpens(RuleBasedStateMachine):
    opens = Bundle("opens")

    def __init__(self) -> None:
        super().__init__()
        self.fleet = Fleet(PIPELINE, range(N), reproducible=False)
        self.round = 0
        self.summed: set[tuple[int, int]] = set()  # (client, model) pairs inside a released sum

    @rule(target=opens, model=st.integers(0, 2), weights=st.lists(st.floats(0.5, 2 * CAP), min_size=N, max_size=N),
          forged=st.lists(forged_weight, min_size=N, max_size=N), seeds=st.lists(forged_seed, min_size=N, max_size=N),
          split=st.sampled_from([None, *range(N)]), drop=st.sampled_from([None, *range(N)]))
    def a_round_with_forged_opens(self, model, weights, forged, seeds, split, drop):
        """One round on ``model`` (the server may send an earlier round's model again: deterministic training
        then gives the same updates); the server rewrites each client's open (weight, seed), may give one client
        another session (splitting the group) and may leave one client out (to difference two sums)."""
        self.round += 1
        values, context = updates(range(N), seed=model), model_context([np.full(3, model, np.float32)])
        for c in range(N):
            client = self.fleet.client(c)
            client.set_update(self.round, values[c], weights[c], context=context)
            self.fleet.states[c] = client.state()
        sent = {}

        def tamper(c, stage, request):
            if c == drop:
                return None
            if stage != "open":
                return request
            changes = {}
            if forged[c] is not None:
                changes["relative_weight"] = forged[c]
            if seeds[c] is not None:
                changes["seed"] = [seeds[c][0], seeds[c][1]]
            if split == c:
                changes["session"] = OS_RANDOM.bytes(16)
            sent[c] = reframe(request, **changes)
            return sent[c]

        self.fleet.tamper = tamper
        try:
            out = self.fleet.server.run_round(self.round, dict(enumerate(weights)), rng=np.random.default_rng(7),
                                              exchange=self.fleet.exchange, context=context)
        except ProtocolError:
            return self.round, sent
        finally:
            self.fleet.tamper = None
        alive = survivors(out)
        own = {c: min(weights[c], CAP) / CAP for c in alive}  # what each client computes for itself
        expected = sum(own[c] * values[c].astype(np.float64) for c in alive) / sum(own.values())
        np.testing.assert_allclose(out.aggregate, expected, atol=2e-3)
        np.testing.assert_allclose(out.group_weights.sum(), sum(own.values()), rtol=1e-3)
        pairs = {(c, model) for c in alive}
        assert not pairs & self.summed, "an update from one model entered two released sums"
        self.summed |= pairs
        return self.round, sent

    @rule(batch=opens, sender=st.integers(0, N - 1), receiver=st.integers(0, N - 1))
    def an_old_open_is_refused(self, batch, sender, receiver):
        """An earlier open (meant for any client) delivered again: refused, nothing encoded, if the receiver's
        input of that round is spent (it got an open then) or a later round's input is pending. (A client the
        server left out still holds that round's input: one open of it is legitimate.)"""
        round_, sent = batch
        if sender in sent and (receiver in sent or round_ < self.round):
            assert self.fleet.deliver(receiver, sent[sender]) is None


MaliciousOpens.TestCase.settings = settings(max_examples=30, stateful_step_count=5, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
test_a_server_choosing_every_open_field_never_skews_the_sum = MaliciousOpens.TestCase

