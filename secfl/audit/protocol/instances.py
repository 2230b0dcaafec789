"""SecAgg / SecAgg+ attempts by a malicious server on instances, rosters and the key and share stages.

Threat model: the server chooses the session, round, group and roster of every instance and may
show different clients different ones, re-run an instance, or open fresh ones over the same inputs
(to difference two sums); it may lie about the group size, invent Sybil members, substitute or
tamper with the keys and shares it relays, and keep talking to a client that refused. Honest
clients derive n themselves, keep one ``ContributionRecord`` for life and name an input by what it
depends on (here: the task and the FL round), as in ``harness.Group``. Each function
returns an ``Attempt``.
"""

from __future__ import annotations

import numpy as np

from secfl.audit.protocol.base import Attempt, Refusal, attempt, decisive, decisively, flip_bit, refusals
from secfl.audit.protocol.harness import (Excluded, Group, Round, SetupFailed, blobs_of, body, ids_message,
                                            keys_message, read_ids_of, read_keys, refused_by)
from secfl.exceptions import ProtocolError, SecflError
from secfl.hazmat import crypto, shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import advertise_message, pair_info, share_aad


# Rosters ----------------------------------------------------------------------------------------------

def roster_wrong_size(p: str) -> Attempt:
    def go():
        g = Group(p)
        sizes = sorted({3, g.n - 1, g.n + 1, 2 * g.n, 4 * g.n} - {g.n})
        return refusals([(f"{size} members", lambda size=size: decisively(g.client, 0, g.instance(range(size))))
                         for size in sizes])

    return attempt("roster-of-wrong-size", p, "The server invites client 0 to an instance whose roster has fewer or "
                   "more members than the group size n the client derived (e.g. 2n honest clients in one instance).", go)


def roster_without_client(p: str) -> Attempt:
    def go():
        g = Group(p)
        with decisive():
            g.client(0, g.instance(range(1, g.n + 1)))
        return "client 0 joined an instance whose roster does not list it"

    return attempt("roster-without-client", p, "The server invites client 0 to an instance of n other clients.", go)


def split_rosters(p: str, *, dropped: bool) -> Attempt:
    """Same (session, round, group), two rosters sharing only client 0: self-mask shares of 0 from one,
    key shares of 0 from the other."""
    def go():
        g = Group(p)
        first = Round(g)
        first.run()  # client 0 alive: its neighbours revealed its self-mask shares
        other = g.instance([0, *range(g.n, 2 * g.n - 1)], session=first.instance.session)
        second = Round(g, other)
        if not dropped:  # client 0 is asked for its masked input a second time
            refused_by([second.clients[0]], second.run)
            return "client 0 contributed its input to two instances"
        second.run(dropped_by=lambda stage: {0} if stage not in ("advertise_keys", "share_keys", "check_shares")
                   else set())  # 0 "dropped": its neighbours in the second roster reveal its key shares
        revealed = first.shares_of(first.log["unmask", "up"]) | second.shares_of(second.log["unmask", "up"])
        b_seed = first.secret(first.shares_of(first.log["unmask", "up"]), 0, m.SELF_MASK)
        s_sk = second.secret(second.shares_of(second.log["unmask", "up"]), 0, m.KEY_SHARE)
        upload = first.log["masked_input", "up"][0]
        pair = {v: first.pair_key(0, v, s_sk, owner=0) for v in read_ids_of(upload)}
        leak = first.leak(0, first.strip(upload, 0, b_seed, pair))
        if leak:
            return leak
        holders = sorted(h for h in revealed if 0 in revealed[h] and h in second.clients)
        stacked = np.stack([revealed[h][0][1] for h in holders]).reshape(len(holders), 1, m.SHARE_WORDS)
        wanted = first.server.keys[0].s_public
        with decisive():  # the real robust decoder with the first instance's check of 0's mask key
            shamir.combine_robust([h + 1 for h in holders], stacked, threshold=first.t,
                                  check=lambda e: crypto.x25519_public(shamir.decode_secret(e[0])) == wanted)
        return "client 0's first-instance mask key from the second roster's key shares"

    name = "split-rosters-key-shares" if dropped else "split-rosters-second-contribution"
    how = ("client 0 'drops' in the second, whose members reveal its key shares" if dropped
           else "client 0 is asked for its masked input in both")
    return attempt(name, p, "The server shows two disjoint sets of clients different rosters for the same (session, "
                   f"round, group), each with client 0 (2n - 1 honest clients in all); {how}.", go)


def sybil_roster(p: str) -> Attempt:
    def go():
        g = Group(p)
        instance = g.instance([0, *range(10_000, 10_000 + g.n - 1)])  # n - 1 ids the directory does not know
        rnd = Round(g, instance, members=[0])
        rnd.run(halt=("advertise_keys", "up"))
        entries = []
        for v in sorted(rnd.neighbours(0)):
            forger, _ = crypto.ed25519_keypair()
            (_, c_pk), (_, s_pk) = crypto.x25519_keypair(), crypto.x25519_keypair()
            unsigned = m.KeyEntry(v, c_pk, s_pk, bytes(32), b"")
            entries.append(m.KeyEntry(v, c_pk, s_pk, bytes(32), crypto.sign(forger, advertise_message(rnd.digest,
                                                                                                        unsigned))))
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd.to(0), entries))
        return "client 0 shared its secrets with Sybils the server made up"

    return attempt("sybil-roster", p, "The server invites client 0 to a roster of the right size whose other n - 1 "
                   "members are ids it made up (their keys signed by the server).", go)


def lie_about_group_size(p: str) -> Attempt:
    def go():
        g = Group(p)
        seen: list[int] = []

        def noise_share(n: int) -> np.ndarray:  # each client adds 1/n of the noise: a larger n shrinks it
            seen.append(n)
            return (g.input(0) + np.uint32(2**20 // n)).astype(np.uint32)

        honest = Round(g, values={0: noise_share})
        honest.run()
        if seen != [g.n]:
            raise SetupFailed(f"the input callable saw n = {seen}, not {g.n}")
        g2 = Group(p)
        def invite(size: int) -> None:
            instance = g2.instance(range(size))
            with decisive():
                g2.client(0, instance, values=noise_share)

        return refusals([(f"{size} members", lambda size=size: invite(size)) for size in (2 * g.n, 10 * g.n)])

    return attempt("lie-about-group-size", p, "Client 0's input is a noise share computed from the bound n "
                   "(values=lambda n: ...); the server invites it to a roster of 2n or 10n members to shrink it.", go)


# Retries and differencing -----------------------------------------------------------------------------

def retry_same_instance(p: str) -> Attempt:
    def go():
        g = Group(p)
        first = Round(g)
        first.run()
        again = Round(g, first.instance)  # the same instance, the same inputs
        refused_by(again.clients.values(), again.run)
        return "a second sum over the same inputs"

    return attempt("retry-same-instance", p, "After the instance completed, the server runs it again ('retry') "
                   "with the same clients and inputs.", go)


def difference_fresh_sessions(p: str) -> Attempt:
    def one(label: str, **changes):
        g = Group(p)
        first = Round(g)
        first.run()
        roster = [*range(g.n - 1), g.n] if changes.pop("swap", False) else list(range(g.n))
        second = Round(g, g.instance(roster, **changes))
        refused_by(second.clients.values(), second.run)
        return f"two sums over rosters differing in one client ({label}): x_{g.n - 1} - x_{g.n}"

    variants = {"fresh session, one client swapped": {"swap": True},
                "fresh session, round 2, same inputs": {"round_": 2, "swap": True},
                "fresh session, group 1, same roster": {"group": 1}}
    return attempt("difference-fresh-sessions", p, "The server opens fresh sessions over the same inputs (a roster "
                   "with one client swapped, another round number or group index) to difference the sums.",
                   lambda: refusals([(label, lambda label=label, c=c: one(label, **dict(c)))
                                     for label, c in variants.items()]))


# Keys and shares ----------------------------------------------------------------------------------------

def _discarded(p: str, rewrite, what: str):
    """The server rewrites the CIPHERTEXTS to client 0: 0 must drop that share, and the round still sum exactly."""
    rnd = Round(p)
    sender: list[int] = []

    def tamper(stage, direction, messages):
        if (stage, direction) == ("share_keys", "down"):
            blobs = blobs_of(messages[0])
            sender.append(min(blobs))
            blobs[sender[0]] = rewrite(rnd, messages, sender[0])
            messages = {**messages, 0: m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs))}
        return messages

    total = rnd.run(tamper)
    if sender[0] in m.read_ids(body(rnd.log["check_shares", "up"][0], m.ACCEPTED), max_count=rnd.group.n):
        return f"client 0 accepted {what}"
    if not np.array_equal(total, rnd.group.total(rnd.clients)):
        return f"a wrong sum after {what}"
    raise Refusal(Excluded(f"client 0 discarded {what}; exact sum"))


def tampered_share(p: str) -> Attempt:
    return attempt("tampered-share-ciphertext", p, "The server flips one bit of an encrypted share it relays.",
                   lambda: _discarded(p, lambda rnd, msgs, s: flip_bit(blobs_of(msgs[0])[s], 20), "a tampered share"))


def share_for_another(p: str) -> Attempt:
    def rewrite(rnd, msgs, s):
        other = min(v for v in msgs if v not in (0, s) and s in blobs_of(msgs[v]))
        return blobs_of(msgs[other])[s]

    return attempt("share-for-another-client", p, "The server delivers to client 0 a share a neighbour encrypted "
                   "for another client.", lambda: _discarded(p, rewrite, "a share encrypted for another client"))


def substituted_key(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        c_sk, c_pk = crypto.x25519_keypair()
        victim: list[int] = []

        def tamper(stage, direction, messages):
            if (stage, direction) == ("advertise_keys", "down"):
                entries = read_keys(messages[0])
                e = entries[0]
                victim.append(e.client)
                entries[0] = m.KeyEntry(e.client, c_pk, c_pk, e.commitment, e.signature)
                messages = {**messages, 0: keys_message(rnd.to(0), entries)}
            return messages

        total = rnd.run(tamper)
        blob = blobs_of(rnd.log["share_keys", "up"][0], m.SHARES).get(victim[0])
        if blob is not None:
            key = crypto.agree(c_sk, rnd.clients[0].c_pk, info=pair_info("secagg-share", rnd.digest, 0, victim[0]))
            try:
                crypto.open_sealed(key, blob, aad=share_aad(rnd.digest, 0, victim[0]))
            except ProtocolError:
                return f"client 0 sent a share to client {victim[0]} after its keys were substituted"
            return f"client 0's shares for client {victim[0]}, decrypted with the server's key"
        if not np.array_equal(total, rnd.expected()):
            return "a wrong sum after the substitution"
        raise Refusal(Excluded(f"client 0 ignored client {victim[0]}'s substituted keys; exact sum"))

    return attempt("substituted-round-key", p, "The server replaces a neighbour's advertised round keys with its own "
                   "(to decrypt the shares client 0 sends it).", go)


def sybil(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("advertise_keys", "down"))
        _, public = crypto.x25519_keypair()
        fake = m.KeyEntry(10_000, public, public, bytes(32), bytes(m.SIG_BYTES))
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd.to(0), [*read_keys(rnd.log["advertise_keys", "down"][0])[:-1],
                                                               fake]))
        return "client 0 accepted a client outside its roster"

    return attempt("sybil-client", p, "The server adds an invented client (not in the roster, not in the "
                   "directory) to client 0's neighbours.", go)


# A client that refused must stay silent -------------------------------------------------------------------

STEP_AFTER = {"share_keys": "check_shares", "check_shares": "masked_input", "masked_input": "consistency_check",
              "consistency_check": "unmask", "unmask": "convict"}
BEFORE = {"share_keys": "advertise_keys", "check_shares": "share_keys", "masked_input": "check_shares",
          "consistency_check": "masked_input", "unmask": "consistency_check"}
REFUSED = {"share_keys": (m.KEYS, "the KEYS message of client 1"), "check_shares": (m.CIPHERTEXTS, "a share from "
           "an outsider"), "masked_input": (m.QUALIFIED, "an outsider qualified"), "consistency_check": (m.SURVIVORS,
           "an outsider alive"), "unmask": (m.UNMASK_REQUEST, "an unmask request without statements")}
NEXT = {"check_shares": m.CIPHERTEXTS, "masked_input": m.QUALIFIED, "consistency_check": m.SURVIVORS,
        "unmask": m.UNMASK_REQUEST}


def continue_after_refusal(p: str, stage: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=(BEFORE[stage], "down"))
        client = rnd.clients[0]
        if stage == "share_keys":
            bad = rnd.log["advertise_keys", "down"][1]
        elif stage == "check_shares":
            bad = m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), {10_000: bytes(m.SHARE_CIPHERTEXT)}))
        elif stage == "unmask":
            bad = m.encode(m.UNMASK_REQUEST, rnd.to(0), Writer().u32(0))
        else:
            bad = ids_message(REFUSED[stage][0], rnd.to(0), [*rnd.neighbours(0), 10_000])
        try:
            getattr(client, stage)(bad)
        except SecflError:
            pass
        else:
            raise SetupFailed(f"client 0 accepted {REFUSED[stage][1]}")
        following = STEP_AFTER[stage]
        message = (m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), {})) if following == "check_shares"
                   else m.encode(m.UNMASK_REQUEST, rnd.to(0), Writer().u32(0)) if following == "unmask"
                   else m.encode(m.CONVICTION, rnd.to(0), Writer().u32(0)) if following == "convict"  # asks no key
                   else ids_message(NEXT[following], rnd.to(0), rnd.neighbours(0)))
        with decisive():
            getattr(client, following)(message)
        return f"client 0 answered at {following} after refusing {stage}"

    return attempt(f"continue-after-refused-{stage.replace('_', '-')}", p, f"Client 0 refuses the server's message at "
                   f"{stage} ({REFUSED[stage][1]}); the server sends the next stage's message anyway.", go)
