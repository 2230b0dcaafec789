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

What is attempted (``cases.py``), SecAgg / SecAgg+: rosters of the wrong size or without the
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

from collections.abc import Sequence

from secfl.audit.protocol.base import (NOTHING, Attempt, Refusal, attempt, decisive, decisively, flip_bit,
                                         refusals)
from secfl.audit.protocol.cases import CASES
from secfl.exceptions import ConfigurationError

__all__ = ["Attempt", "NOTHING", "PROTOCOLS", "Refusal", "attempt", "decisive", "decisively", "flip_bit",
           "format_report", "refusals", "run_protocol_audit"]

PROTOCOLS = ("secagg", "secagg+", "he")


def run_protocol_audit(protocols: Sequence[str] = PROTOCOLS) -> list[Attempt]:
    """Run every attack attempt against each named protocol; return the attempts in order.

    Raises:
        ConfigurationError: an unknown protocol name.
    """
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
