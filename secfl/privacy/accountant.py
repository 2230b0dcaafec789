"""The accountant: prices the composition of per-round DP events as (epsilon, delta).

Units: a Gaussian event's z is std / C, where C bounds one client's contribution (add/remove-one).
Under replace-one neighbours (sampling without replacement) one client moves a sum by up to 2C; the
accountant converts (z / 2 in dp-accounting's units), so the same z costs more epsilon there.

Backends are dp-accounting's PLD accountant (the primary one: tight, numerically composed privacy
loss distributions) and its RDP accountant. Client sampling is either Poisson with rate q
(add/remove-one neighbours) or a fixed-size sample without replacement (replace-one neighbours),
and must match how the engine really samples. Discrete mechanisms (distributed discrete Gaussian,
Skellam) are priced in RDP from their papers' bounds, subsampled with the general bounds for any
mechanism (``secfl.privacy.discrete``), since no PLD is known for them.

Unsampled Gaussian rounds (``sample_rate=1``, e.g. against the server, and one-time releases) are priced
exactly in closed form under ``kind="pld"`` (``secfl.privacy.gdp``): Gaussians compose into one Gaussian.

Guarantee: ``epsilon`` is an upper bound on the privacy loss of the stated composition under the
stated sampling and neighbouring relation; ``noise_multiplier`` returns a z whose epsilon is at most
the target (to dp-accounting's calibration tolerance).

References: Meiser & Mohammadi, Tight on Budget?, CCS 2018, and Doroshenko et al., Connect the
    Dots, PETS 2022 (PLD); Mironov, Talwar, Zhang, Rényi DP of the Sampled Gaussian Mechanism, 2019;
    Wang, Balle, Kasiviswanathan, Subsampled Rényi DP, AISTATS 2019 (sampling without replacement).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction

import dp_accounting
import numpy as np
from dp_accounting.pld import PLDAccountant
from dp_accounting.rdp import RdpAccountant
from dp_accounting.rdp.rdp_privacy_accountant import DEFAULT_RDP_ORDERS

from secfl.exceptions import ConfigurationError
from secfl.privacy import rdp
from secfl.privacy.events import DiscreteSumDpEvent
from secfl.privacy.gdp import gdp_epsilon

KINDS = ("pld", "rdp")
PLD_GRID = 1e-3  # PLD discretization; pessimistic rounding keeps epsilon an upper bound (1.8289 vs 1.8282 at 1e-4)
SAMPLINGS = ("poisson", "without_replacement")
_RELATION = {
    "poisson": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
    "without_replacement": dp_accounting.NeighboringRelation.REPLACE_ONE,
}


def _check(name: str, value: object, low: float, high: float = math.inf, *, open_low: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        side = "(" if open_low else "["
        raise ConfigurationError(f"{name}={value!r} must be a finite number in {side}{low:g}, {high:g}]")
    return float(value)


class Accountant:
    """Epsilon of T rounds of a sampled mechanism, and the noise multiplier for a target epsilon.

    Args:
        kind: ``"pld"`` (default, tight) or ``"rdp"``.
        sampling: ``"poisson"`` (each client joins a round with probability q) or
            ``"without_replacement"`` (a fixed-size sample of q * N clients each round).

    Raises:
        ConfigurationError: an unknown kind or sampling, or PLD with sampling without replacement
            (dp-accounting prices that only in RDP).
    """

    def __init__(self, kind: str = "pld", sampling: str = "poisson") -> None:
        if kind not in KINDS:
            raise ConfigurationError(f"Accountant(kind={kind!r}): choose one of {KINDS}")
        if sampling not in SAMPLINGS:
            raise ConfigurationError(f"Accountant(sampling={sampling!r}): choose one of {SAMPLINGS}")
        if kind == "pld" and sampling == "without_replacement":
            raise ConfigurationError(
                "Accountant(kind='pld', sampling='without_replacement'): dp-accounting's PLD accountant has no "
                "fixed-size sampling; use kind='rdp', or Poisson sampling of clients"
            )
        self.kind, self.sampling = kind, sampling

    def epsilon(self, *, noise_multiplier: float, sample_rate: float, rounds: int, delta: float) -> float:
        """Epsilon after ``rounds`` rounds of the sampled Gaussian mechanism with multiplier z."""
        z = _check("noise_multiplier", noise_multiplier, 0.0)
        self._check_common(sample_rate, rounds, delta)
        if z == 0:
            return math.inf
        return self.epsilon_of([(dp_accounting.GaussianDpEvent(z), rounds)], sample_rate=sample_rate, delta=delta)

    def noise_multiplier(self, *, target_epsilon: float, sample_rate: float, rounds: int, delta: float) -> float:
        """The smallest z (to 0.1%) whose epsilon after ``rounds`` rounds is at most ``target_epsilon``.

        Raises:
            ConfigurationError: a bad argument, or a target no z up to 1e4 reaches.
        """
        return self.calibrate(dp_accounting.GaussianDpEvent, target_epsilon=target_epsilon,
                              sample_rate=sample_rate, rounds=rounds, delta=delta)

    def calibrate(self, event: Callable[[float], dp_accounting.DpEvent], *, target_epsilon: float,
                  sample_rate: float, rounds: int, delta: float,
                  unsampled: Sequence[tuple[dp_accounting.DpEvent, int]] = ()) -> float:
        """The smallest z (to 0.1%) for which ``rounds`` rounds of ``event(z)`` (plus the ``unsampled``
        one-time releases, see ``epsilon_of``) stay within the target.

        ``event`` maps a noise multiplier to one round's event (e.g. a pipeline's); epsilon must
        fall as z grows. Bisection on log z over [1e-3, 1e4].

        Raises:
            ConfigurationError: a bad argument, or a target no z up to 1e4 reaches.
        """
        target = _check("target_epsilon", target_epsilon, 0.0, open_low=True)
        self._check_common(sample_rate, rounds, delta)

        def eps(z: float) -> float:
            return self.epsilon_of([(event(z), rounds)], sample_rate=sample_rate, delta=delta, unsampled=unsampled)

        low, high = 1e-3, 1.0
        while eps(high) > target:
            low, high = high, high * 4
            if high > 1e4:
                raise ConfigurationError(
                    f"no noise multiplier up to 1e4 reaches epsilon {target:g} at delta {delta:g} over {rounds} "
                    f"rounds with sample rate {sample_rate:g}: raise the target or lower the rounds"
                )
        while high / low > 1 + 1e-3:
            middle = math.sqrt(low * high)
            low, high = (low, middle) if eps(middle) <= target else (middle, high)
        return high

    def epsilon_of(
        self, rounds: Sequence[tuple[dp_accounting.DpEvent, int]], *, sample_rate: float, delta: float,
        unsampled: Sequence[tuple[dp_accounting.DpEvent, int]] = (),
    ) -> float:
        """Epsilon of a composition: ``(event of one round, number of such rounds)`` pairs.

        Each event is what one round releases about one client if it is sampled; the sampling
        (rate ``sample_rate``) is applied here. ``sample_rate=1`` prices the bare events (no
        amplification), under the same neighbouring relation. ``unsampled`` events are releases every
        client takes part in for sure (e.g. a one-time exploration): composed bare, never amplified.

        Raises:
            ConfigurationError: bad rate or delta, or ``unsampled`` events beside discrete-noise rounds.
        """
        counts = _counted(rounds)
        once = _counted(unsampled)
        self._check_common(sample_rate, max(sum(counts.values()), 1), delta)
        if not counts and not once:
            return 0.0
        if any(isinstance(e, dp_accounting.NonPrivateDpEvent) for e in [*counts, *once]):
            return math.inf
        if any(_has_discrete(e) for e in [*counts, *once]):
            if once:
                raise ConfigurationError("a one-time release beside discrete-noise rounds (ddgauss) cannot be "
                                         "composed here; use Gaussian noise (gaussian_noise) for the rounds")
            return self._discrete_epsilon(counts, sample_rate, delta)
        bare = [(self._sampled(e, 1.0), n) for e, n in [*(counts.items() if sample_rate >= 1 else ()), *once.items()]]
        if self.kind == "pld" and len(bare) == len(counts) + len(once) and all(
                type(e) is dp_accounting.GaussianDpEvent for e, _ in bare):  # exact: Gaussians compose into one
            if any(e.noise_multiplier == 0 for e, _ in bare):
                return math.inf
            return gdp_epsilon(math.sqrt(sum(n / e.noise_multiplier**2 for e, n in bare)), delta)
        accountant = self._fresh()
        with _quiet_absl():  # dp-accounting's RDP logs "failed to converge" for orders it then skips
            for event, count in counts.items():
                accountant.compose(self._sampled(event, sample_rate), count)
            for event, count in once.items():
                accountant.compose(self._sampled(event, 1.0), count)
            return float(accountant.get_epsilon(delta))

    def _fresh(self) -> dp_accounting.PrivacyAccountant:
        relation = _RELATION[self.sampling]
        if self.kind == "pld":  # a 1e-3 grid: 10x faster than the default 1e-4, still an upper bound
            return PLDAccountant(relation, value_discretization_interval=PLD_GRID)
        return RdpAccountant(neighboring_relation=relation)

    def _sampled(self, event: dp_accounting.DpEvent, sample_rate: float) -> dp_accounting.DpEvent:
        if sample_rate >= 1:  # no sampling (e.g. against an observer who knows the sample): the bare event
            return event if self.sampling == "poisson" else _replace_one(event)
        if self.sampling == "poisson":
            return dp_accounting.PoissonSampledDpEvent(sample_rate, event)
        ratio = Fraction(sample_rate).limit_denominator(1_000_000)  # RDP uses only the ratio
        return dp_accounting.SampledWithoutReplacementDpEvent(ratio.denominator, ratio.numerator,
                                                              _replace_one(event))

    def _discrete_epsilon(self, counts: Counter, sample_rate: float, delta: float) -> float:
        """RDP of composed rounds containing discrete mechanisms (general subsampling bounds)."""
        if self.kind != "rdp":
            raise ConfigurationError(
                "discrete-noise rounds (distributed discrete Gaussian / Skellam) are accounted in RDP only; "
                "use accountant kind 'rdp'"
            )
        if sample_rate >= 1:  # no subsampling bound to satisfy: fractional orders too (tighter near 1)
            orders = np.union1d(DEFAULT_RDP_ORDERS, rdp.ORDERS).astype(float)
        else:  # the general subsampling bounds hold at integer orders
            orders = np.asarray(rdp.ORDERS, dtype=float)
        subsample = rdp.poisson_subsampled_rdp if self.sampling == "poisson" else rdp.wor_subsampled_rdp
        total = np.zeros_like(orders)
        for event, count in counts.items():
            curve = _rdp_curve(event, orders, self.sampling)
            total += count * (curve if sample_rate >= 1 else subsample(sample_rate, curve, orders))
        return float(rdp.rdp_to_epsilon(orders, total, delta))

    @staticmethod
    def _check_common(sample_rate: float, rounds: int, delta: float) -> None:
        _check("sample_rate", sample_rate, 0.0, 1.0, open_low=True)
        _check("delta", delta, 0.0, 1.0, open_low=True)
        if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
            raise ConfigurationError(f"rounds={rounds!r} must be an int >= 1")

    def __repr__(self) -> str:
        return f"Accountant(kind={self.kind!r}, sampling={self.sampling!r})"


@contextlib.contextmanager
def _quiet_absl() -> Iterator[None]:
    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _replace_one(event: dp_accounting.DpEvent) -> dp_accounting.DpEvent:
    """An event in replace-one units: dp-accounting reads z as std / (replace-one sensitivity), and
    replacing a client moves a sum of vectors clipped to C by up to 2C, so z becomes z / 2."""
    if isinstance(event, dp_accounting.GaussianDpEvent):
        return dp_accounting.GaussianDpEvent(event.noise_multiplier / 2)
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return dp_accounting.ComposedDpEvent([_replace_one(e) for e in event.events])
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        return dp_accounting.SelfComposedDpEvent(_replace_one(event.event), event.count)
    return event


def _has_discrete(event: dp_accounting.DpEvent) -> bool:
    if isinstance(event, DiscreteSumDpEvent):
        return True
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return any(_has_discrete(e) for e in event.events)
    return False


def _rdp_curve(event: dp_accounting.DpEvent, orders: np.ndarray, sampling: str) -> np.ndarray:
    """The unsampled RDP of one round's event at integer ``orders``."""
    if isinstance(event, DiscreteSumDpEvent):
        return event.rdp(orders, replace_one=sampling == "without_replacement")
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return sum((_rdp_curve(e, orders, sampling) for e in event.events), np.zeros_like(orders))
    if isinstance(event, dp_accounting.GaussianDpEvent):
        factor = 4.0 if sampling == "without_replacement" else 1.0  # replace-one: sensitivity 2C
        return factor * orders / (2.0 * event.noise_multiplier**2)
    if isinstance(event, dp_accounting.NoOpDpEvent):
        return np.zeros_like(orders)
    raise ConfigurationError(f"cannot account for {event!r}")


def _counted(pairs: Sequence[tuple[dp_accounting.DpEvent, int]]) -> Counter:
    """``(event, count)`` pairs as a Counter without empty counts or no-op events."""
    counts: Counter[dp_accounting.DpEvent] = Counter()
    for event, count in pairs:
        counts[event] += int(count)
    return Counter({e: c for e, c in counts.items() if c > 0 and not isinstance(e, dp_accounting.NoOpDpEvent)})
