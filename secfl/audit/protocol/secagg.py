"""SecAgg / SecAgg+ attempts by a malicious server at the consistency and unmask stages, and its replays.

Threat model: the server relays honestly (``run_instance``) until the stage it attacks, then writes
the clients' messages itself: it may show each client any survivor list, forward any statements,
replay any earlier message, ask again, and claim at the convict stage that a neighbour dealt bad
shares (a CONVICTION built from the signed shares it collected, altered, re-signed or replayed).
It wants t self-mask shares and the pairwise keys of one client whose masked input it holds (that
client's input), a pairwise key with an honest neighbour, or any answer from a client that already
refused or answered. Each function returns an ``Attempt``.
"""

from __future__ import annotations

from collections.abc import Callable

from secfl.audit.protocol.base import Attempt, Refusal, attempt, decisive, refusals
from secfl.audit.protocol.harness import (Group, Round, SetupFailed, conviction_message, deals_badly, ids_message,
                                            read_convictions, read_ids_of, read_pair_keys, signature_of,
                                            statements_message)
from secfl.exceptions import SecflError
from secfl.hazmat import crypto, shamir
from secfl.protocols import secagg_graph
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES, alive_message, share_message, signed_digests

BEFORE_UNMASK = ("masked_input", "down")  # uploads in, SURVIVORS not yet delivered
BEFORE_CONVICT = ("unmask", "down")  # every share revealed, CONVICTION (if any) not yet delivered


def _signed(rnd: Round, lists) -> dict[int, tuple[tuple[int, ...], bytes]]:
    """Show each client its survivor list; return its signed statement (alive list, signature)."""
    out = {}
    for c, alive in lists.items():
        alive = tuple(sorted(set(alive) & rnd.neighbours(c)))
        out[c] = (alive, signature_of(rnd.clients[c].consistency_check(ids_message(m.SURVIVORS, rnd.to(c), alive))))
    return out


def _request(rnd: Round, c: int, statements) -> bytes:
    """The UNMASK_REQUEST for c: the statements of its neighbours that list it alive."""
    mine = {s: st for s, st in statements.items() if s in rnd.neighbours(c) and c in st[0]}
    return statements_message(rnd.to(c), mine)


def _honest_until_unmask(p: str) -> tuple[Round, dict]:
    rnd = Round(p)
    rnd.run(halt=BEFORE_UNMASK)
    everyone = set(rnd.clients)
    return rnd, _signed(rnd, {c: everyone for c in rnd.clients})


# Both shares of one client ------------------------------------------------------------------------------

def late_upload(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=BEFORE_UNMASK)  # the victim's masked input did arrive ...
        victim = 1
        others = [c for c in rnd.clients if c != victim]
        statements = _signed(rnd, {c: set(others) for c in others})  # ... but the server calls it late
        holders = sorted(rnd.neighbours(victim))
        revealed = rnd.shares_of({c: rnd.clients[c].unmask(_request(rnd, c, statements)) for c in holders})
        s_sk = rnd.secret(revealed, victim, m.KEY_SHARE)
        upload = rnd.log["masked_input", "up"][victim]
        pair = {v: rnd.pair_key(victim, v, s_sk, owner=victim) for v in read_ids_of(upload)}
        leak = rnd.leak(victim, rnd.strip(upload, victim, None, pair))  # x + PRG(b): still masked
        if leak:
            return leak
        with decisive():  # now ask a holder again, listing the victim alive, for its self-mask share
            rnd.clients[holders[0]].unmask(_request(rnd, holders[0], statements))
        return f"client {victim}'s self-mask share after its mask key was reconstructed"

    return attempt("late-upload-both-masks", p, "The server receives a client's masked input, tells everyone it "
                   "dropped (key shares reconstruct its mask key), then asks a holder again for its self-mask share.", go)


def both_shares_two_requests(p: str) -> Attempt:
    def go():
        rnd, statements = _honest_until_unmask(p)
        rnd.clients[0].unmask(_request(rnd, 0, statements))  # honest: self-mask shares of every survivor
        victim = min(rnd.neighbours(0))
        fewer = {s: st for s, st in statements.items() if s != victim}
        with decisive():
            rnd.clients[0].unmask(_request(rnd, 0, fewer))
        return f"a second answer (client {victim}'s key share) from client 0"

    return attempt("both-shares-two-requests", p, "After client 0 answered the unmask request, the server sends "
                   "another one without a neighbour's statement, to get that neighbour's key share too.", go)


def list_changed_after_signing(p: str) -> Attempt:
    def go():
        rnd, _ = _honest_until_unmask(p)
        victim = min(rnd.neighbours(0))
        with decisive():
            rnd.clients[0].consistency_check(ids_message(m.SURVIVORS, rnd.to(0), rnd.neighbours(0) - {victim}))
        return f"a second statement from client 0, without client {victim} (its key share would follow)"

    return attempt("survivors-changed-after-signing", p, "After client 0 signed that every neighbour survived, the "
                   "server sends it a second survivor list without one neighbour.", go)


def one_client_misled(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=BEFORE_UNMASK)
        victim = max(rnd.neighbours(0))
        everyone = set(rnd.clients)
        statements = _signed(rnd, {c: everyone - {victim} if c == 0 else everyone for c in rnd.clients})
        answers = {c: rnd.clients[c].unmask(_request(rnd, c, statements)) for c in rnd.neighbours(victim)}
        revealed = rnd.shares_of(answers)
        with decisive():  # the real Shamir code on the key shares of the victim the server got
            rnd.secret(revealed, victim, m.KEY_SHARE)
        return f"client {victim}'s mask key (from key shares) next to its self-mask seed"

    return attempt("inconsistent-survivors-one-client", p, "The server shows client 0 a survivor list without a "
                   "neighbour and everyone else the full list, collects every answer and reconstructs that "
                   "neighbour's mask key (it also has its self-mask shares).", go)


def split_view(p: str, n: int) -> Attempt:
    def go():
        rnd = Round(Group(p, n=n))
        rnd.run(halt=BEFORE_UNMASK)
        target = 0
        pi = secagg_graph.relabelling(rnd.instance)  # the public ring order of the graph
        ring = sorted(rnd.clients, key=lambda c: pi(rnd.instance.index(c)))
        others = [c for c in ring if c != target]
        parts = max(2, len(others) // rnd.t)
        quorums = [others[i::parts] for i in range(parts)]  # disjoint signer sets
        refusals_seen, statements = [], {}
        for q in quorums:  # each quorum: itself and the target alive, the other quorums dropped
            for c in q:
                statements.update(_signed(rnd, {c: set(q) | {target}}))
        statements.update(_signed(rnd, {target: set(rnd.clients)}))
        revealed = {}
        for c in others:
            try:
                revealed[c] = rnd.shares_of({c: rnd.clients[c].unmask(_request(rnd, c, statements))})[c]
            except SecflError as error:
                refusals_seen.append(error)
        upload = rnd.log["masked_input", "up"][target]
        try:
            b_seed = rnd.secret(revealed, target, m.SELF_MASK)
            pair = {v: rnd.pair_key(target, v, rnd.secret(revealed, v, m.KEY_SHARE), owner=v)
                    for v in read_ids_of(upload)}
        except SecflError as error:
            raise Refusal(refusals_seen[0] if refusals_seen else error) from None
        return rnd.leak(target, rnd.strip(upload, target, b_seed, pair)) or "a wrong guess of client 0's input"

    return attempt(f"split-view-quorums-n{n}", p, f"Group of {n}: the server splits the others into disjoint quorums, "
                   "shows each quorum a statement list with itself and client 0 alive, and combines client 0's "
                   "self-mask shares with the key shares of all its neighbours.", go)


# Statements -------------------------------------------------------------------------------------------

def too_few_signatures(p: str) -> Attempt:
    def go():
        rnd, statements = _honest_until_unmask(p)
        mine = dict(sorted((s, st) for s, st in statements.items() if s in rnd.neighbours(0))[: rnd.t - 1])
        with decisive():
            rnd.clients[0].unmask(statements_message(rnd.to(0), mine))
        return "shares from client 0 with fewer than t neighbours confirming it survived"

    return attempt("too-few-signatures", p, "The unmask request carries t - 1 neighbour statements.", go)


def forged_signatures(p: str) -> Attempt:
    def go():
        rnd, statements = _honest_until_unmask(p)
        forger, _ = crypto.ed25519_keypair()
        forged = {s: (alive, crypto.sign(forger, alive_message(rnd.digest, s, alive)))
                  for s, (alive, _) in statements.items()}
        with decisive():
            rnd.clients[0].unmask(_request(rnd, 0, forged))
        return "client 0's shares on statements the server signed itself"

    return attempt("forged-consistency-signatures", p, "The server signs its neighbours' statements with a key of "
                   "its own.", go)


def statement_omits_client(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=BEFORE_UNMASK)
        everyone = set(rnd.clients)
        statements = _signed(rnd, {c: everyone - {0} for c in rnd.clients})  # genuine, but 0 is listed dropped
        mine = {s: st for s, st in statements.items() if s in rnd.neighbours(0)}
        with decisive():
            rnd.clients[0].unmask(statements_message(rnd.to(0), mine))
        return "client 0's shares while its neighbours' statements say it dropped"

    return attempt("statements-omit-client", p, "The unmask request to client 0 carries genuine neighbour "
                   "statements that list client 0 as dropped (its key share would be released by them).", go)


def _instance_sharing(old: Round, c: int, tries: int = 1000):
    """A fresh instance of ``old``'s group in which client c keeps at least t of its neighbours in ``old``."""
    for _ in range(tries):
        instance = old.group.instance()
        if len(secagg_graph.graph(instance, old.group.k)[c] & old.neighbours(c)) >= old.t:
            return instance
    raise SetupFailed(f"no instance in {tries} keeps {old.t} of client {c}'s neighbours")


def statements_other_instance(p: str) -> Attempt:
    def go():
        old, statements = _honest_until_unmask(p)
        # the same clients, another instance (and input); the server starts instances, so it picks one where
        # client 0 has at least t of its old neighbours again: the replayed statements then pass every check
        # but their signatures (without this, a graph sharing no neighbour fails earlier, on the count)
        new = Round(old.group, _instance_sharing(old, 0), input_round=2)
        new.run(halt=BEFORE_UNMASK)
        _signed(new, {0: set(new.clients)})
        with decisive():
            new.clients[0].unmask(_request(new, 0, statements))
        return "client 0 unmasked on statements signed in another instance"

    return attempt("replay-statements-other-instance", p, "The server forwards statements its clients signed in "
                   "another instance.", go)


# Replays ----------------------------------------------------------------------------------------------

def _replay(p: str, name: str, what: str, **changes) -> Attempt:
    def go():
        old = Round(p)
        old.run(halt=("advertise_keys", "down"))
        same = {"session": old.instance.session, "round_": old.instance.round, "group": old.instance.group}
        new = Round(old.group, old.group.instance(**{**same, **changes}))
        new.run(halt=("advertise_keys", "down"))
        with decisive():
            new.clients[0].share_keys(old.log["advertise_keys", "down"][0])
        return f"client 0 accepted keys {what}"

    return attempt(name, p, f"The server sends client 0 its KEYS message {what}.", go)


def replay_earlier_round(p: str) -> Attempt:
    return _replay(p, "replay-earlier-round", "of round 1 in round 2 of the session", round_=2)


def replay_other_session(p: str) -> Attempt:
    return _replay(p, "replay-other-session", "from another session", session=None)


def replay_other_group(p: str) -> Attempt:
    return _replay(p, "replay-other-group", "from group 0 in group 1 of the round", group=1)


def misaddressed(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("advertise_keys", "down"))
        with decisive():
            rnd.clients[1].share_keys(rnd.log["advertise_keys", "down"][0])
        return "client 1 accepted a message addressed to client 0"

    return attempt("misaddressed-message", p, "The server sends client 1 the KEYS message addressed to client 0.", go)


def replay_earlier_stage(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("share_keys", "down"))
        with decisive():
            rnd.clients[0].check_shares(rnd.log["advertise_keys", "down"][0])
        return "client 0 accepted a KEYS message at check_shares"

    return attempt("replay-earlier-stage", p, "At check_shares the server replays the KEYS message of the previous "
                   "stage.", go)


def replay_same_request(p: str) -> Attempt:
    def go():
        rnd, statements = _honest_until_unmask(p)
        request = _request(rnd, 0, statements)
        rnd.clients[0].unmask(request)
        with decisive():
            rnd.clients[0].unmask(request)
        return "client 0 answered the same unmask request twice"

    return attempt("replay-unmask-request", p, "The server replays an unmask request the client already answered.", go)


def out_of_order(p: str) -> Attempt:
    def go():
        rnd = Round(p)
        rnd.run(halt=("advertise_keys", "down"))  # keys advertised; share_keys not run
        with decisive():
            rnd.clients[0].masked_input(ids_message(m.QUALIFIED, rnd.to(0), rnd.neighbours(0)))
        return "client 0 skipped share_keys and check_shares"

    return attempt("skipped-stage", p, "The server skips share_keys and check_shares and asks for the masked input.", go)



# Convictions: a pairwise key with an honest neighbour ------------------------------------------------

def _before_convict(p: str, *, group: Group | None = None, drops: bool = False,
                    cheats: bool = False) -> tuple[Round, dict, int]:
    """An instance run honestly through unmask; returns it, the shares its clients revealed and the subject:
    client 0's lowest neighbour, which ``drops`` before its upload or ``cheats`` (deals shares of another
    seed than it committed to) if asked."""
    rnd = Round(group or p)
    subject = min(rnd.neighbours(0))
    gone = {subject} if drops else set()
    rnd.run(deals_badly(rnd, subject, "seed") if cheats else None, halt=BEFORE_CONVICT,
            dropped_by=lambda stage: gone if STAGES.index(stage) >= STAGES.index("masked_input") else set())
    return rnd, rnd.shares_of(rnd.log["unmask", "up"]), subject


def _ask(rnd: Round, c: int, convictions) -> str:
    """The decisive step: client c shown ``convictions``; what it revealed if it answered."""
    with decisive():
        answer = rnd.clients[c].convict(conviction_message(rnd.to(c), convictions))
    keys = read_pair_keys(answer)
    return f"client {c} revealed its pairwise keys with honest clients {sorted(keys)}" if keys else \
        f"client {c} answered a CONVICTION of honest clients (with no key)"


def _honest_kind(rnd: Round, v: int) -> int:
    return m.SELF_MASK if v in rnd.server.survivors else m.KEY_SHARE


def convict_honest(p: str) -> Attempt:
    def genuine(dropped: bool, everyone: bool):
        victim = 0
        rnd, revealed, v = _before_convict(p, drops=dropped)
        owners = sorted(rnd.neighbours(victim)) if everyone else [v]
        proofs = [(u, _honest_kind(rnd, u), rnd.signed(revealed, u, _honest_kind(rnd, u))) for u in owners]
        return _ask(rnd, victim, proofs)

    return attempt("conviction-of-honest-client", p, "The server shows client 0 the signed shares an honest neighbour "
                   "dealt, exactly as its holders revealed them (they rebuild its committed seed or its s_pk), as a "
                   "proof that it cheated, to get client 0's pairwise key with it (3 variants: one neighbour, every "
                   "neighbour at once, a neighbour that dropped and whose key shares were revealed).",
                   lambda: refusals([("one neighbour", lambda: genuine(False, False)),
                                     ("every neighbour", lambda: genuine(False, True)),
                                     ("a dropped neighbour's key shares", lambda: genuine(True, False))]))


def _off_polynomial(shares: dict[int, tuple]) -> dict[int, tuple]:
    """Every share shifted by its holder's id: on no polynomial of degree < t (the signatures no longer match)."""
    return {h: ((e + h + 1) % shamir.PRIME, other, sig) for h, (e, other, sig) in shares.items()}


def forged_conviction(p: str) -> Attempt:
    victim = 0

    def forged(change: Callable[[Round, int, dict], dict]):
        rnd, revealed, v = _before_convict(p)
        shares = change(rnd, v, rnd.signed(revealed, v, m.SELF_MASK))
        return _ask(rnd, victim, [(v, m.SELF_MASK, shares)])

    def one_element(rnd, v, shares):
        h = min(shares)
        elements, other, signature = shares[h]
        return {**shares, h: ((elements + 1) % shamir.PRIME, other, signature)}

    def server_signed(rnd, v, shares):
        forger, _ = crypto.ed25519_keypair()
        out = {}
        for h, (elements, other, _) in _off_polynomial(shares).items():
            message = share_message(rnd.digest, v, h, signed_digests(m.SELF_MASK, elements, other))
            out[h] = (elements, other, crypto.sign(forger, message))
        return out

    def too_few(rnd, v, shares):
        return dict(sorted(shares.items())[: rnd.t - 1])

    def other_instance():  # a genuine proof: client v cheated in another instance of the same clients
        group = Group(p)
        cheated, _, v = _before_convict(p, group=group, cheats=True)
        proof = read_convictions(cheated.log["unmask", "down"][victim])
        if [owner for owner, _, _ in proof] != [v]:
            raise SetupFailed(f"client {v}, dealing badly, was not convicted")
        honest = Round(group, input_round=2)
        honest.run(halt=BEFORE_CONVICT)
        return _ask(honest, min(honest.neighbours(v)), proof)  # a client that masked with v in this instance

    def kind_swapped():
        rnd, revealed, v = _before_convict(p)
        return _ask(rnd, victim, [(v, m.KEY_SHARE, rnd.signed(revealed, v, m.SELF_MASK))])

    return attempt("forged-conviction-proof", p, "The server builds a CONVICTION of an honest neighbour of client 0 "
                   "to get their pairwise key (6 variants): genuine signed shares with one element changed or all "
                   "moved off the polynomial, shares off the polynomial signed with the server's own key, t - 1 "
                   "genuine shares, self-mask shares presented as key shares, and a genuine proof that the "
                   "neighbour cheated in another instance of the same clients.",
                   lambda: refusals([("one element changed", lambda: forged(one_element)),
                                     ("off the polynomial", lambda: forged(lambda rnd, v, s: _off_polynomial(s))),
                                     ("signed by the server", lambda: forged(server_signed)),
                                     ("t - 1 shares", lambda: forged(too_few)),
                                     ("another kind", kind_swapped),
                                     ("a proof from another instance", other_instance)]))
