"""The ledger: one DP event per finished round, priced by an accountant; guards a budget.

A run's privacy claim is the composition of what each round released about a client (the
pipeline's realized event: its group's noise after dropouts), under the sampling the engine used.
The ledger keeps those events, so a resumed run rebuilds it from ``metrics.jsonl`` and the claim
does not depend on process memory.

It prices the rounds for two observers:

- ``epsilon()``: anyone who sees only the released models. The sample is secret to them, so each
  round is the sampled event (amplification by sampling). The budget guards this number.
- ``epsilon_server()``: the aggregation server, which knows who took part in every round. Against it
  a round costs a client nothing if the client was not sampled and the bare (unamplified) event if it
  was: the server's view of the round (``Pipeline.server_dp_event``: with distributed noise the
  noise of the clients that delivered; with central noise nothing). The figure is the largest
  composition over the clients, i.e. for the client that took part in the most (costliest) rounds.
  With z = 1, q = 0.1, 100 Poisson rounds and delta = 1e-5: 7.05 against the released models, 17.9
  against the server for a client that took part in the expected 10 rounds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

import dp_accounting
import numpy as np

from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError
from secfl.privacy.accountant import Accountant

MAX_EXACT = 16  # more incomparable participation histories than this: price their pointwise maximum (an upper bound)


class Ledger:
    """Composed privacy of the rounds so far, with an optional budget.

    Args:
        accountant: prices the composition.
        sample_rate: q, the probability (Poisson) or fraction (fixed size) of clients per round.
        delta: the delta at which epsilon is reported.
        budget: the largest epsilon the run may reach (None: no limit).
    """

    def __init__(self, accountant: Accountant, *, sample_rate: float, delta: float,
                 budget: float | None = None) -> None:
        if budget is not None and not (isinstance(budget, (int, float)) and budget > 0):
            raise ConfigurationError(f"budget={budget!r} must be a number > 0 (epsilon)")
        self.accountant, self.sample_rate, self.delta, self.budget = accountant, sample_rate, delta, budget
        self.events: Counter[dp_accounting.DpEvent] = Counter()
        self.once: Counter[dp_accounting.DpEvent] = Counter()  # releases every client is in (no sampling)
        self._once_server: Counter[dp_accounting.DpEvent] = Counter()  # the same as the server saw them
        self._everyone: Counter[dp_accounting.DpEvent] = Counter()  # server events of rounds with unknown participants
        self._taken: dict[int, Counter[dp_accounting.DpEvent]] = {}  # client -> server events of its rounds
        self._priced: dict[frozenset, float] = {}
        accountant.epsilon_of([], sample_rate=sample_rate, delta=delta)  # validates q and delta now

    @property
    def rounds(self) -> int:
        return sum(self.events.values())

    def epsilon(self, *extra: dp_accounting.DpEvent, once: Iterable[dp_accounting.DpEvent] = ()) -> float:
        """Epsilon of the recorded rounds and releases, plus ``extra`` prospective rounds and ``once``
        prospective one-time releases."""
        pending = list(self.events.items()) + [(e, 1) for e in extra]
        return self.accountant.epsilon_of(pending, sample_rate=self.sample_rate, delta=self.delta,
                                          unsampled=list(self.once.items()) + [(e, 1) for e in once])

    def record_once(self, event: dp_accounting.DpEvent, server_event: dp_accounting.DpEvent | None = None) -> None:
        """Add a release every client took part in for sure (e.g. AutoFLIP's exploration): composed with
        the rounds without amplification; ``server_event`` is what the server itself saw of it (default:
        ``event``). Not counted in ``rounds`` or ``server_rounds``."""
        self.once[event] += 1
        self._once_server[event if server_event is None else server_event] += 1

    def check(self, event: dp_accounting.DpEvent, *, once: Iterable[dp_accounting.DpEvent] = ()) -> float:
        """The epsilon one more round with ``event`` (and the one-time releases ``once`` it is about to make)
        would reach; raise if that exceeds the budget.

        Raises:
            PrivacyBudgetExceededError: the round would take epsilon above the budget.
        """
        once = list(once)
        after = self.epsilon(event, once=once)
        if self.budget is not None and after > self.budget * (1 + 1e-9):
            what = f"round {self.rounds + 1}" + (" with its one-time release" if once else "")
            raise PrivacyBudgetExceededError(
                f"{what} would reach epsilon {after:.4g} > budget {self.budget:g} "
                f"(delta {self.delta:g}); stopped after {self.rounds} rounds"
            )
        return after

    def record(self, event: dp_accounting.DpEvent, *, participants: Iterable[int] | None = None,
               server_event: dp_accounting.DpEvent | None = None) -> None:
        """Add one finished round (``epsilon()`` then prices everything so far).

        Args:
            event: what the released models reveal of the round about one sampled client.
            participants: the clients the server knows took part (None: unknown, so the round is
                charged to every client against the server).
            server_event: the round as the server sees it (default: ``event``).
        """
        ids = None
        if participants is not None:  # checked before anything is recorded
            if isinstance(participants, (str, bytes)):
                raise ConfigurationError(f"participants={participants!r}: pass an iterable of client ids")
            ids = list(participants)
            for cid in ids:
                if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                    raise ConfigurationError(f"participant {cid!r}: client ids are ints")
        self.events[event] += 1
        seen = event if server_event is None else server_event
        if ids is None:
            self._everyone[seen] += 1
            return
        for cid in {int(c) for c in ids}:
            self._taken.setdefault(cid, Counter())[seen] += 1

    @property
    def server_rounds(self) -> int:
        """The most rounds any one client took part in (what the server-side epsilon composes)."""
        most = max((sum(c.values()) for c in self._taken.values()), default=0)
        return most + sum(self._everyone.values())

    def epsilon_server(self) -> float:
        """Epsilon against the aggregation server, which knows who took part in each round.

        No amplification by sampling: each client's rounds compose bare; the largest over the
        clients (0 before any round). Exact over the maximal participation histories, or, when more
        than ``MAX_EXACT`` of them are incomparable, their pointwise maximum (an upper bound).
        """
        common = self._everyone + self._once_server
        histories = {frozenset((common + taken).items()) for taken in self._taken.values()}
        histories.add(frozenset(common.items()))
        maximal = _maximal([Counter(dict(h)) for h in histories if h])
        if not maximal:
            return 0.0
        if len(maximal) > MAX_EXACT:
            top: Counter[dp_accounting.DpEvent] = Counter()
            for history in maximal:
                top |= history
            maximal = [top]
        return max(self._price_unsampled(h) for h in maximal)

    def _price_unsampled(self, history: Counter) -> float:
        key = frozenset(history.items())
        if key not in self._priced:
            self._priced[key] = self.accountant.epsilon_of(list(history.items()), sample_rate=1.0, delta=self.delta)
        return self._priced[key]

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", budget={self.budget:g}"
        eps = self.epsilon() if self.events or self.once else 0.0
        server = self.epsilon_server()
        return (f"Ledger({self.accountant!r}, q={self.sample_rate:g}, delta={self.delta:g}, rounds={self.rounds}, "
                f"epsilon={eps if math.isfinite(eps) else 'inf'}, "
                f"epsilon_server={server if math.isfinite(server) else 'inf'}{budget})")


def _maximal(histories: list[Counter]) -> list[Counter]:
    """The histories no other history contains (a contained one composes to no more epsilon)."""
    kept: list[Counter] = []
    for history in sorted(histories, key=lambda h: -sum(h.values())):
        if not any(all(other[e] >= n for e, n in history.items()) for other in kept):
            kept.append(history)
    return kept
