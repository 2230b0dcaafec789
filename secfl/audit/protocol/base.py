"""The building blocks of the protocol-attack suite (``secfl.audit.protocol.run``): an ``Attempt`` and its
outcome, the ``decisive`` step whose secfl error is a refusal, and small helpers the attack modules share."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from secfl.exceptions import SecflError

__all__ = ["NOTHING", "Attempt", "Refusal", "attempt", "decisive", "decisively", "flip_bit", "refusals"]

NOTHING = "nothing"


@dataclass(frozen=True)
class Attempt:
    """One attack attempt and its outcome.

    Args:
        name: short identifier, unique per protocol (e.g. ``"split-view-quorums-n6"``).
        protocol: ``"secagg"``, ``"secagg+"`` or ``"he"``.
        description: what the attacker did, in one sentence.
        refused: an honest party raised a secfl error (or excluded a faulty client, ``Excluded``)
            and the attacker got nothing.
        obtained: ``"nothing"``, or in words what leaked (e.g. ``"client 0's unmasked input"``).
        error: the class name of the error the honest party raised (``""`` if none).
        in_scope: the attempt is inside the protocol's threat model (False: run to document a
            limitation the protocol states, e.g. a malicious HE aggregator).
    """

    name: str
    protocol: str
    description: str
    refused: bool
    obtained: str
    error: str
    in_scope: bool = True


class Refusal(Exception):
    """An honest party refused at the attack's decisive step; ``error`` is what it raised."""

    def __init__(self, error: SecflError, names: str | None = None) -> None:
        super().__init__(str(error))
        self.error, self.names = error, names or type(error).__name__


@contextmanager
def decisive() -> Iterator[None]:
    """Mark the honest party's step an attack targets: a secfl error raised inside is its refusal.

    Errors raised anywhere else (while the attacker sets the attack up) are NOT refusals: a broken
    set-up must never be reported as a defended attack.
    """
    try:
        yield
    except SecflError as error:
        raise Refusal(error) from error


def attempt(name: str, protocol: str, description: str, action: Callable[[], str | None], *,
            in_scope: bool = True) -> Attempt:
    """Run ``action`` (one attack) and turn its outcome into an ``Attempt``.

    ``action`` either raises a ``Refusal`` (an honest party raised a secfl error inside
    ``decisive()``) or returns what the attacker got, in words. A secfl error outside ``decisive()``
    means the attack could not be set up, and any other exception is a crash: both are reported as
    not refused, so that the suite fails loudly rather than claim a refusal it did not observe.
    """
    try:
        leaked = action()
    except Refusal as refusal:
        return Attempt(name, protocol, description, True, NOTHING, refusal.names, in_scope)
    except SecflError as error:
        return Attempt(name, protocol, description, False,
                       f"unknown: the attack failed before the honest party's check ({type(error).__name__}: {error})",
                       type(error).__name__, in_scope)
    except Exception as error:  # noqa: BLE001 - a crash must be reported, not hidden
        return Attempt(name, protocol, description, False,
                       f"unknown: crashed with {type(error).__name__} ({error}) instead of refusing",
                       type(error).__name__, in_scope)
    return Attempt(name, protocol, description, False, leaked or "unknown: no party refused", "", in_scope)


#: A variant of a sweep is a hang after limit_seconds of CPU, or this many times that of wall-clock time.
WALL_FACTOR = 10


def refusals(calls: Iterable[tuple[str, Callable[[], object]]], *, limit_seconds: float = 1.0) -> str:
    """Run several variants of one attack; raise one ``Refusal`` if every variant was refused in time.

    Each call raises a ``Refusal`` (see ``decisive``) or returns (accepted; a returned string says
    what the attacker got). Returns (instead of raising) a description of the first variant that
    was not refused or took more than ``limit_seconds`` of this process's CPU time or ``WALL_FACTOR`` times
    that in all (a hang, also in a worker process), so that the caller reports the attempt as not refused.
    Used for the malformed-message sweeps.
    """
    errors: list[SecflError] = []
    for label, call in calls:
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        try:
            outcome = call()
        except Refusal as refusal:
            errors.append(refusal.error)
        except Exception as error:  # noqa: BLE001 - a crash is reported as such, with the variant
            return f"unknown: variant {label!r} crashed with {type(error).__name__} ({error}) instead of refusing"
        else:
            return f"variant {label!r} was accepted" + (f": {outcome}" if isinstance(outcome, str) else "")
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
        if cpu > limit_seconds or wall > WALL_FACTOR * limit_seconds:  # CPU: not fooled by a busy machine;
            return f"variant {label!r} took {cpu:.1f} s of CPU, {wall:.1f} s in all (a hang)"  # wall: a child
    names = sorted({type(e).__name__ for e in errors})
    raise Refusal(errors[0], ", ".join(names))


def decisively(step: Callable, *args):
    """``step(*args)`` as the decisive honest step (see ``decisive``)."""
    with decisive():
        return step(*args)


def flip_bit(data: bytes, position: int) -> bytes:
    """``data`` with the lowest bit of byte ``position`` flipped (a tampered message)."""
    mutated = bytearray(data)
    mutated[position] ^= 0x01
    return bytes(mutated)
