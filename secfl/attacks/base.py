"""What every omniscient update attack shares: the call shape, input checks and option checks.

Threat model: the f Byzantine clients of a round collude and see every honest vector of that round
(omniscient, as in ByzFL, Blades and FLPoison); they may also know the server's aggregation rule
(``Adaptive``). They send arbitrary vectors but follow the protocol.

Call shape (ByzFL's ``attack(honest)``, but returning all f rows)::

    byzantine = attack(honest, num_byzantine=f, rng=rng, aggregator=None)   # honest [n_h, d] -> [f, d]

n = n_h + f is the total number of clients of the round. The honest array is never modified; the result
is a new float64 array.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError

__all__ = ["UpdateAttack", "check_honest", "check_num_byzantine", "check_rng", "real_option", "bool_option",
           "choice_option", "honest_std", "tile"]

AggregatorFn = Callable[[np.ndarray], np.ndarray]


def check_honest(name: str, honest: Any, min_honest: int = 1) -> np.ndarray:
    """The honest vectors as a float64 [n_h, d] array (a view when already float64; never written to).

    Raises:
        ConfigurationError: not a real 2-D array, no columns, fewer than ``min_honest`` rows, non-finite values.
    """
    array = np.asarray(honest)
    if array.ndim != 2 or array.shape[1] == 0:
        raise ConfigurationError(f"{name}: honest vectors must have shape [n_h, d] with d >= 1, got {array.shape}")
    real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if array.dtype == np.bool_ or not real:
        raise ConfigurationError(f"{name}: honest vectors must be real numbers, got dtype {array.dtype}")
    if array.shape[0] < min_honest:
        raise ConfigurationError(f"{name} needs >= {min_honest} honest vectors, got {array.shape[0]}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ConfigurationError(f"{name}: honest vectors contain non-finite values")
    return array


def check_num_byzantine(name: str, num_byzantine: Any) -> int:
    """f as an int >= 1 (bools and floats are refused)."""
    if isinstance(num_byzantine, bool) or not isinstance(num_byzantine, Integral) or num_byzantine < 1:
        raise ConfigurationError(f"{name}(num_byzantine={num_byzantine!r}): must be an int >= 1")
    return int(num_byzantine)


def check_rng(name: str, rng: Any) -> np.random.Generator:
    """rng must be a ``numpy.random.Generator`` (experiment randomness is always passed in, never global)."""
    if not isinstance(rng, np.random.Generator):
        raise ConfigurationError(f"{name}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                                 f"got {type(rng).__name__}")
    return rng


def real_option(owner: str, key: str, value: Any, *, low: float | None = None, strict: bool = False,
                allow_none: bool = False) -> float | None:
    """``value`` as a finite float, optionally > ``low`` (strict) or >= ``low``; None passes if allowed."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok and low is not None:
        ok = float(value) > low if strict else float(value) >= low
    if not ok:
        bound = "" if low is None else f" {'>' if strict else '>='} {low:g}"
        none = " or None" if allow_none else ""
        raise ConfigurationError(f"{owner}({key}={value!r}): must be a finite number{bound}{none}")
    return float(value)


def bool_option(owner: str, key: str, value: Any) -> bool:
    """``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise ConfigurationError(f"{owner}({key}={value!r}): must be True or False")
    return value


def choice_option(owner: str, key: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices``, of the same type (so 1.0 and True never match the int 1)."""
    if not any(type(value) is type(choice) and value == choice for choice in choices):
        raise ConfigurationError(f"{owner}({key}={value!r}): must be one of {list(choices)}")
    return value


def honest_std(honest: np.ndarray, ddof: int, owner: str) -> np.ndarray:
    """Coordinate-wise standard deviation of the honest rows with ``ddof`` (needs n_h > ddof)."""
    if honest.shape[0] <= ddof:
        raise ConfigurationError(f"{owner}: the standard deviation with ddof={ddof} needs more than {ddof} "
                                 f"honest vectors, got {honest.shape[0]}")
    return honest.std(axis=0, ddof=ddof)


class UpdateAttack:
    """Base class: validates the call, then ``_craft`` builds the f Byzantine rows.

    Subclasses set ``name``, optionally ``strength`` (the constructor option that scales the attack, used
    by ``Adaptive``) and ``min_honest``, keep every constructor argument as an attribute of the same name
    (``params`` and ``repr`` read them back), and implement ``_craft``.
    """

    name: ClassVar[str] = "update_attack"
    strength: ClassVar[str | None] = None
    min_honest: ClassVar[int] = 1

    def __call__(self, honest: np.ndarray, *, num_byzantine: int, rng: np.random.Generator,
                 aggregator: AggregatorFn | None = None) -> np.ndarray:
        """The f Byzantine vectors [f, d] (float64) crafted from the honest vectors [n_h, d].

        Raises:
            ConfigurationError: bad shapes, non-finite input, f < 1, rng not a Generator, too few honest
                vectors for this attack, or a result that overflowed to non-finite values.
        """
        honest = check_honest(self.name, honest, self.min_honest)
        f = check_num_byzantine(self.name, num_byzantine)
        check_rng(self.name, rng)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, as an error
            out = np.asarray(self._craft(honest, f, rng, aggregator), dtype=np.float64)
        if out.shape != (f, honest.shape[1]):  # pragma: no cover - a subclass bug, not a user error
            raise AssertionError(f"{self.name} produced shape {out.shape}, expected {(f, honest.shape[1])}")
        if not np.all(np.isfinite(out)):
            raise ConfigurationError(f"{self!r} produced non-finite values (overflow); reduce its strength")
        return out

    def _craft(self, honest: np.ndarray, f: int, rng: np.random.Generator,
               aggregator: AggregatorFn | None) -> np.ndarray:
        raise NotImplementedError

    # ---- strength (the knob Adaptive turns) ------------------------------------------------------------

    def strength_parameter(self) -> str | None:
        """The constructor option that scales this attack (None: the attack has no such knob)."""
        return type(self).strength

    def resolved_strength(self, honest: np.ndarray, num_byzantine: int) -> float:
        """The strength this attack uses on these inputs (e.g. ALIE's z from the formula)."""
        return float(getattr(self, self.strength_parameter()))

    def with_strength(self, value: float) -> UpdateAttack:
        """A copy of this attack with its strength option fixed to ``value``."""
        key = self.strength_parameter()
        if key is None:
            raise ConfigurationError(f"{self.name} has no strength parameter")
        return type(self)(**{**self.params(), key: value})

    # ---- introspection -----------------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this attack."""
        names = [p.name for p in inspect.signature(type(self).__init__).parameters.values()
                 if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        return {key: getattr(self, key) for key in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def tile(vector: np.ndarray, f: int) -> np.ndarray:
    """f copies of ``vector`` as a new [f, d] array (every Byzantine client sends the same vector)."""
    return np.tile(vector, (f, 1))
