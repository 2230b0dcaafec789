"""Protocol attacks against secfl's own secure sums: a regression suite (``secfl audit protocol``).

Each attempt plays a malicious party against honest parties run by secfl's real protocol code
(``SecAggClient`` / ``SecAggServer`` over bound instances, relayed by ``secagg_round.run_instance``
whose ``tamper`` hook is the attacker; ``HeClient`` / ``HeAggregator`` / ``KeyHolder``), over the
same bytes the protocols exchange. It is reported as an ``Attempt``: refused or not, what the
attacker obtained (it must be "nothing") and the error the honest party raised. An attempt is
reported as refused only when an honest party was seen to raise a secfl error, or, for a faulty
client, when the honest parties were seen to exclude it (error ``Excluded``): the round completed,
the client is not counted (or is flagged, if its input was already in) and the sum equals the
plaintext sum of the clients that count. If an attack completes, ``obtained`` says what leaked,
e.g. "client 0's unmasked input", or that one client made the round abort.

Threat model checked (see protocols/secagg/SPEC.md and protocols/he_sum/SPEC.md):

- SecAgg / SecAgg+: an **actively malicious server** that chooses sessions, rounds, groups and
  rosters (and may show different clients different ones, re-run an instance or open fresh ones
  over the same inputs), and may drop, delay, replay, reorder, forge, truncate or withhold
  messages, lie about who survived and show different clients different views. It does not
  collude with clients (``corrupt_rate`` = 0, the default) and cannot forge entries of the trusted
  ``KeyDirectory``. It must never obtain an individual input, a sum over fewer than t inputs, or
  two sums over one input. Also **one faulty registered client** that tries to abort its group
  (it must be excluded, not fatal) and a **network attacker** (tampered or replayed bytes).
- HeSum: an **honest-but-curious aggregator** that does not collude with the key holder, and
  outsiders / the network (tampered, replayed or misdirected uploads and contexts, malformed
  bytes). The aggregator must not obtain an individual input, also when dropouts leave a single
  upload in a group. Attempts by a *malicious* aggregator are run too where the roles have a
  check (the key holder decrypts each group at most once per round, for this round only); the one
  the HE model excludes on purpose (asking the key holder to decrypt a single upload as a sum) is
  run and reported with ``in_scope=False``.

What is attempted (``protocol_cases``), SecAgg / SecAgg+: rosters of the wrong size or without the
client, two disjoint rosters for one (session, round, group) (self-mask shares of a client from
one, its key shares from the other), Sybil rosters, a lie about n to shrink a noise share
(``values=lambda n: ...``); a retry of a completed instance and fresh sessions over the same inputs
(differencing); a late upload, a second survivor list or unmask request, inconsistent or split
survivor statements, too few, forged, omitting or cross-instance statements; replays (earlier
round, other session, other group, other recipient, earlier stage, same request), skipped stages;
tampered, misdirected or substituted shares and keys, Sybil neighbours; a client that keeps talking
after refusing (five stages); a CONVICTION of an honest neighbour (its genuine signed shares, or a
forged, re-signed, too short, re-kinded or cross-instance proof) to obtain a pairwise key; one
faulty client (low-order X25519 keys, another client's round keys, garbage share ciphertexts,
signed shares that cannot rebuild what it advertised, a wrong Shamir share at unmask); a changed
or replayed masked upload; malformed and non-bytes messages (None, int, str,
list, non-contiguous memoryview) at every stage in both directions; too few honest clients (one
neighbour, t - 1 qualified, t - 1 survivors, t - 1 unmask answers, a group of 2, an isolated client
in the sparse graph); and the HE counterparts.

Out of scope: collusion of the server with clients beyond the configured corrupt bound (n - 1
colluders learn the last input from any sum), a compromised ``KeyDirectory`` or key holder,
side channels (timing, message sizes), denial of service (a malicious server can always abort a
round), input validity (a malicious client can send any value in the ring), and the DP
guarantees of the released sums (see ``secfl.privacy``).

Every attempt runs in milliseconds to about a second with small vectors and groups (d = 8 to 16,
n <= 17 clients across two rosters).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from secfl.exceptions import ConfigurationError, SecflError

__all__ = ["Attempt", "PROTOCOLS", "Refusal", "attempt", "decisive", "format_report", "refusals", "run_protocol_audit"]

PROTOCOLS = ("secagg", "secagg+", "he")
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


def refusals(calls: Iterable[tuple[str, Callable[[], object]]], *, limit_seconds: float = 1.0) -> str:
    """Run several variants of one attack; raise one ``Refusal`` if every variant was refused in time.

    Each call raises a ``Refusal`` (see ``decisive``) or returns (accepted; a returned string says
    what the attacker got). Returns (instead of raising) a description of the first variant that
    was not refused or took longer than ``limit_seconds`` (a hang), so that the caller reports the
    attempt as not refused. Used for the malformed-message sweeps.
    """
    errors: list[SecflError] = []
    for label, call in calls:
        start = time.perf_counter()
        try:
            outcome = call()
        except Refusal as refusal:
            errors.append(refusal.error)
        except Exception as error:  # noqa: BLE001 - a crash is reported as such, with the variant
            return f"unknown: variant {label!r} crashed with {type(error).__name__} ({error}) instead of refusing"
        else:
            return f"variant {label!r} was accepted" + (f": {outcome}" if isinstance(outcome, str) else "")
        if time.perf_counter() - start > limit_seconds:
            return f"variant {label!r} took {time.perf_counter() - start:.1f} s (a hang)"
    names = sorted({type(e).__name__ for e in errors})
    raise Refusal(errors[0], ", ".join(names))


def run_protocol_audit(protocols: Sequence[str] = PROTOCOLS) -> list[Attempt]:
    """Run every attack attempt against each named protocol; return the attempts in order.

    Raises:
        ConfigurationError: an unknown protocol name.
    """
    from secfl.attacks.protocol_cases import CASES  # the attack functions (a separate module)

    unknown = [p for p in protocols if p not in CASES]
    if unknown:
        raise ConfigurationError(f"run_protocol_audit: unknown protocol(s) {unknown}; use some of {list(CASES)}")
    out: list[Attempt] = []
    for protocol in protocols:
        out.extend(case(protocol) for case in CASES[protocol].values())
    return out


def format_report(attempts: Sequence[Attempt]) -> str:
    """A markdown table: attempt, protocol, refused, what it obtained, error; then a summary line."""
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    rows = ["| attempt | protocol | refused | what it obtained | error |", "|---|---|---|---|---|"]
    for a in attempts:
        refused = "yes" if a.refused else ("**NO**" if a.in_scope else "no (outside the threat model)")
        rows.append(f"| {cell(a.name)} | {cell(a.protocol)} | {refused} | {cell(a.obtained)} | {cell(a.error)} |")
    in_scope = [a for a in attempts if a.in_scope]
    failed = [a for a in in_scope if not a.refused]
    summary = (f"\n{sum(a.refused for a in in_scope)} of {len(in_scope)} in-scope attempts refused"
               + (f"; NOT refused: {', '.join(f'{a.protocol}/{a.name}' for a in failed)}" if failed else "")
               + (f"; {len(attempts) - len(in_scope)} out-of-scope attempt(s) shown for reference"
                  if len(in_scope) < len(attempts) else "") + ".")
    return "\n".join(rows) + "\n" + summary + "\n"


def decisively(step: Callable, *args):
    """``step(*args)`` as the decisive honest step (see ``decisive``)."""
    with decisive():
        return step(*args)


def flip_bit(data: bytes, position: int) -> bytes:
    """``data`` with the lowest bit of byte ``position`` flipped (a tampered message)."""
    mutated = bytearray(data)
    mutated[position] ^= 0x01
    return bytes(mutated)
