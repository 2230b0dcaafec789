"""The ledger: one DP event per finished round, priced by an accountant; guards a budget.

A run's privacy claim is the composition of what each round released about a client (the
pipeline's realized event: its group's noise after dropouts), under the sampling the engine used.
The ledger keeps those events, so a resumed run rebuilds it from ``metrics.jsonl`` and the claim
does not depend on process memory.
"""

from __future__ import annotations

import math
from collections import Counter

import dp_accounting

from secfl.exceptions import ConfigurationError, PrivacyBudgetExceededError
from secfl.privacy.accountant import Accountant


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
        accountant.epsilon_of([], sample_rate=sample_rate, delta=delta)  # validates q and delta now

    @property
    def rounds(self) -> int:
        return sum(self.events.values())

    def epsilon(self, *extra: dp_accounting.DpEvent) -> float:
        """Epsilon of the recorded rounds, plus ``extra`` prospective rounds."""
        pending = list(self.events.items()) + [(e, 1) for e in extra]
        return self.accountant.epsilon_of(pending, sample_rate=self.sample_rate, delta=self.delta)

    def check(self, event: dp_accounting.DpEvent) -> float:
        """The epsilon one more round with ``event`` would reach; raise if that exceeds the budget.

        Raises:
            PrivacyBudgetExceededError: the round would take epsilon above the budget.
        """
        after = self.epsilon(event)
        if self.budget is not None and after > self.budget * (1 + 1e-9):
            raise PrivacyBudgetExceededError(
                f"round {self.rounds + 1} would reach epsilon {after:.4g} > budget {self.budget:g} "
                f"(delta {self.delta:g}); stopped after {self.rounds} rounds"
            )
        return after

    def record(self, event: dp_accounting.DpEvent) -> None:
        """Add one finished round (``epsilon()`` then prices everything so far)."""
        self.events[event] += 1

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", budget={self.budget:g}"
        eps = self.epsilon() if self.events else 0.0
        return (f"Ledger({self.accountant!r}, q={self.sample_rate:g}, delta={self.delta:g}, rounds={self.rounds}, "
                f"epsilon={eps if math.isfinite(eps) else 'inf'}{budget})")
