"""SecAgg / SecAgg+ attempts by a malicious server: both shares of one client, survivor lists, replays,
forged and tampered messages, a client that refused (each returns an ``Attempt``).
"""

from __future__ import annotations

import numpy as np

from secfl.attacks.protocol import Attempt, Refusal, attempt, decisive, flip_bit
from secfl.attacks.protocol_harness import (SecAggRound, everyone_signs, key_entries, keys_message, message_body,
                                            refuse, share_blobs)
from secfl.exceptions import SecflError
from secfl.hazmat import crypto, shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import consistency_message


# SecAgg: asking for both shares of one client ----------------------------------------------------

def both_shares_one_request(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        with decisive():
            rnd.unmask(0, everyone, signatures, dropped=[victim])
        return f"a self-mask share and a key share of client {victim} from client 0"

    return attempt("both-shares-one-request", p, "The server lists a client as surviving AND dropped in one "
                   "unmask request, asking for both its self-mask share and its key share.", go)


def both_shares_two_requests(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        rnd.unmask(0, everyone, signatures)  # honest: the self-mask shares of every survivor
        with decisive():
            rnd.unmask(0, [c for c in everyone if c != victim], signatures, dropped=[victim])
        return f"both shares of client {victim} from client 0"

    return attempt("both-shares-two-requests", p, "After an honest unmask request, the server sends a second one "
                   "declaring a client dropped, to get its key share too.", go)


def late_upload(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()  # the victim's masked input did arrive
        victim = 1
        alive = [c for c in rnd.clients if c != victim]
        signatures = rnd.sign({c: alive for c in alive})  # ... but the server says it was too late
        holders = [c for c in alive if victim in rnd.clients[c].shared_with]
        revealed = {c: rnd.unmask(c, alive, signatures) for c in holders[: rnd.t]}
        s_sk = rnd.secret(revealed, victim, m.KEY_SHARE)
        pair = {v: rnd.pair_key(victim, v, s_sk, owner=victim) for v in rnd.clients[victim].shared_with}
        leak = rnd.leak(victim, rnd.strip(victim, None, pair))  # x + PRG(b): still masked
        if leak:
            return leak
        with decisive():  # now ask another holder for the victim's self-mask share
            rnd.unmask(holders[rnd.t], sorted(rnd.clients), signatures)
        return f"client {victim}'s self-mask shares after its key was reconstructed"

    return attempt("late-upload-both-masks", p, "The server receives a client's masked input, declares it dropped "
                   "to reconstruct its mask key, then asks the other holders for its self-mask shares.", go)


# SecAgg: survivor lists -------------------------------------------------------------------------

def list_changed_after_signing(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = everyone_signs(rnd)
        victim = min(rnd.clients[0].shared_with)
        with decisive():
            rnd.unmask(0, [c for c in everyone if c != victim], signatures, dropped=[victim])
        return f"client {victim}'s key share from client 0"

    return attempt("survivors-changed-after-signing", p, "Everyone signs the full survivor list; the unmask request "
                   "then drops one client from it, to get that client's key share.", go)


def one_client_misled(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone = sorted(rnd.clients)
        victim = max(rnd.clients[0].shared_with)
        mine = [c for c in everyone if c != victim]
        signatures = rnd.sign({c: (mine if c == 0 else everyone) for c in everyone})
        with decisive():
            rnd.unmask(0, mine, {c: s for c, s in signatures.items() if c in mine})
        return f"client {victim}'s key share from client 0"

    return attempt("inconsistent-survivors-one-client", p, "The server shows client 0 a survivor list without a "
                   "neighbour and everyone else the full list, then asks client 0 to unmask with the signatures.", go)


def split_view(p: str, n: int) -> Attempt:
    def go():
        rnd = SecAggRound(p, n=n).shares().masked()
        target, order = 0, rnd.ring_order()
        parts = max(2, rnd.n // rnd.t)
        quorums = [order[i::parts] for i in range(parts)]  # disjoint signer sets, spread over the ring
        lists = {i: sorted(set(q) | {target}) for i, q in enumerate(quorums)}
        where = {c: i for i, q in enumerate(quorums) for c in q}
        refusals_seen, signatures = [], {}
        for c, i in where.items():
            try:
                signatures.update(rnd.sign({c: lists[i]}))
            except SecflError as error:
                refusals_seen.append(error)
        revealed = {}
        for c, i in where.items():
            if c not in signatures:  # it refused its list: ask it nothing more
                continue
            quorum = {s: signatures[s] for s in quorums[i] if s in signatures}
            try:
                revealed[c] = rnd.unmask(c, lists[i], quorum)
            except SecflError as error:
                refusals_seen.append(error)
        try:
            b_seed = rnd.secret(revealed, target, m.SELF_MASK)
            pair = {v: rnd.pair_key(target, v, rnd.secret(revealed, v, m.KEY_SHARE), owner=v)
                    for v in rnd.clients[target].shared_with}
        except SecflError:
            if refusals_seen:  # the attack failed because honest clients refused
                raise Refusal(refusals_seen[0]) from None
            raise
        return rnd.leak(target, rnd.strip(target, b_seed, pair)) or "a wrong guess of client 0's input"

    return attempt(f"split-view-quorums-n{n}", p, f"Group of {n}: the server splits the clients into disjoint "
                   "quorums of >= t signers, shows each quorum its own survivor list (client 0 alive in all, the "
                   "other quorums dropped), and combines the self-mask shares of client 0 with the key shares of "
                   "all its neighbours.", go)


def too_few_signatures(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = everyone_signs(rnd)
        with decisive():
            rnd.unmask(0, everyone, dict(sorted(signatures.items())[: rnd.t - 1]))
        return "shares from client 0 with fewer than t consistency signatures"

    return attempt("too-few-signatures", p, "The unmask request carries t - 1 consistency signatures.", go)


def forged_signatures(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone = sorted(rnd.clients)
        victim = max(rnd.clients[0].shared_with)
        mine = [c for c in everyone if c != victim]
        signatures = rnd.sign({0: mine})  # only client 0 is shown this list; the server forges the others
        forger, _ = crypto.ed25519_keypair()
        statement = consistency_message(rnd.header, mine)
        signatures.update({c: crypto.sign(forger, statement) for c in mine if c != 0})
        with decisive():
            rnd.unmask(0, mine, signatures)
        return f"client {victim}'s key share from client 0"

    return attempt("forged-consistency-signatures", p, "The server signs a survivor list on the other clients' "
                   "behalf with a key of its own.", go)


# SecAgg: replays --------------------------------------------------------------------------------

def replay_earlier_round(p: str) -> Attempt:
    def go():
        old = SecAggRound(p)
        new = SecAggRound(p, protocol=old.protocol, session=old.header.session, round_=2)
        with decisive():
            new.clients[0].share_keys(old.keys[0])
        return "client 0 accepted round 1's keys in round 2"

    return attempt("replay-earlier-round", p, "The server replays round 1's KEYS message in round 2 of the "
                   "session.", go)


def replay_other_session(p: str) -> Attempt:
    def go():
        old = SecAggRound(p)
        other = SecAggRound(p, protocol=old.protocol)
        with decisive():
            other.clients[0].share_keys(old.keys[0])
        return "client 0 accepted another session's keys"

    return attempt("replay-other-session", p, "The server replays a KEYS message from another session.", go)


def replay_other_group(p: str) -> Attempt:
    def go():
        first = SecAggRound(p)
        second = SecAggRound(p, protocol=first.protocol, session=first.header.session, group=1)
        with decisive():
            second.clients[0].share_keys(first.keys[0])
        return "client 0 of group 1 accepted group 0's keys"

    return attempt("replay-other-group", p, "The server sends group 0's KEYS message to a client of group 1 "
                   "in the same round.", go)


def misaddressed(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        with decisive():
            rnd.clients[1].share_keys(rnd.keys[0])
        return "client 1 accepted a message addressed to client 0"

    return attempt("misaddressed-message", p, "The server sends client 1 the KEYS message addressed to client 0.", go)


def replay_earlier_stage(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        with decisive():
            rnd.clients[0].masked_input(rnd.keys[0])
        return "client 0 accepted a KEYS message at the masked-input stage"

    return attempt("replay-earlier-stage", p, "At the masked-input stage the server replays the client's KEYS "
                   "message of the previous stage.", go)


def replay_same_request(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        everyone, signatures = everyone_signs(rnd)
        request = rnd.request(0, everyone, [], signatures)
        rnd.clients[0].unmask(request)
        with decisive():
            rnd.clients[0].unmask(request)
        return "client 0 answered the same unmask request twice"

    return attempt("replay-unmask-request", p, "The server replays an unmask request the client already answered.", go)


def out_of_order(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)  # keys advertised; share_keys not run
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), Writer().u32(0)))
        return "client 0 skipped share_keys"

    return attempt("skipped-stage", p, "The server skips share_keys and sends a masked-input request directly.", go)


# SecAgg: forged and tampered messages ------------------------------------------------------------


def tampered_share(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        blobs = share_blobs(rnd.ciphertexts[0], rnd.n)
        sender = min(blobs)
        blobs[sender] = flip_bit(blobs[sender], 20)
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
        return "client 0 accepted a tampered share"

    return attempt("tampered-share-ciphertext", p, "The server flips one bit of an encrypted share.", go)


def share_for_another(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares()
        sender = min(rnd.graph[0])
        other = min(v for v in rnd.graph[sender] if v != 0)
        blobs = share_blobs(rnd.ciphertexts[0], rnd.n)
        blobs[sender] = share_blobs(rnd.ciphertexts[other], rnd.n)[sender]  # encrypted for `other`
        with decisive():
            rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
        return "client 0 accepted a share encrypted for another client"

    return attempt("share-for-another-client", p, "The server delivers to client 0 a share that a neighbour "
                   "encrypted for another client.", go)




def substituted_key(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        entries = key_entries(rnd)
        _, public = crypto.x25519_keypair()
        victim = entries[1]
        entries[1] = m.KeyEntry(victim.client, public, public, victim.commitment, victim.signature)
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd, entries))
        return f"client 0 encrypted its shares for client {victim.client} under the server's key"

    return attempt("substituted-round-key", p, "The server replaces a client's advertised round keys with its own "
                   "(to decrypt the shares sent to it).", go)


def sybil(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p)
        _, public = crypto.x25519_keypair()
        fake = m.KeyEntry(10_000, public, public, bytes(32), bytes(m.SIG_BYTES))
        with decisive():
            rnd.clients[0].share_keys(keys_message(rnd, [*key_entries(rnd)[:-1], fake]))
        return "client 0 accepted a client the directory does not know"

    return attempt("sybil-client", p, "The server invents a client (an id outside the key directory).", go)


def corrupted_share_from_client(p: str) -> Attempt:
    def go():
        rnd = SecAggRound(p).shares().masked()
        requests = rnd.server.receive_consistency(
            {c: rnd.clients[c].consistency_check(rnd.survivor_messages[c]) for c in rnd.clients})
        answers = {c: rnd.clients[c].unmask(requests[c]) for c in rnd.clients}
        cheat = 1
        reader = message_body(answers[cheat], m.UNMASK)
        shares = m.read_shares(reader, max_count=rnd.n)
        victim = min(shares)
        kind, elements = shares[victim]
        shares[victim] = (kind, (elements + 1) % shamir.PRIME)
        answers[cheat] = m.encode(m.UNMASK, m.Header(rnd.header.session, 1, 0, cheat, m.SERVER),
                                  m.write_shares(Writer(), shares))
        with decisive():
            total = rnd.server.receive_unmask(answers)
        honest = np.sum([rnd.inputs[c] for c in rnd.clients], axis=0, dtype=np.uint32)
        return "a wrong sum, accepted by the server" if not np.array_equal(total, honest) else (
            "nothing, but the corrupted share was silently ignored")

    return attempt("malicious-client-bad-share", p, "A malicious client answers the unmask request with a corrupted "
                   "share, to bias the sum undetected.", go)


# SecAgg: a client that refused must stay silent -----------------------------------------------------

def continue_after_refusal(p: str, stage: str) -> Attempt:
    """The server sends a message the client refuses, then carries on with the next stage as if nothing happened."""
    def go():
        rnd = SecAggRound(p)
        client, everyone = rnd.clients[0], sorted(rnd.clients)
        if stage == "share_keys":
            refuse(client.share_keys, rnd.keys[1])  # the KEYS message addressed to client 1
            with decisive():
                client.masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), Writer().u32(0)))
            return "client 0 processed the next stage after refusing share_keys"
        rnd.shares()
        if stage == "masked_input":
            blobs = share_blobs(rnd.ciphertexts[0], rnd.n)
            blobs[min(blobs)] = flip_bit(blobs[min(blobs)], 20)
            refuse(client.masked_input, m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))
            with decisive():
                rnd.sign({0: everyone})
            return "client 0's consistency signature on a survivor list after it refused the round (it never uploaded)"
        for c in everyone[1:]:
            rnd.clients[c].masked_input(rnd.ciphertexts[c])
        rnd.uploads = {0: client.masked_input(rnd.ciphertexts[0])}
        signatures = rnd.sign({c: everyone for c in everyone[1:]})
        refuse(client.consistency_check, m.encode(m.SURVIVORS, rnd.to(0), Writer().ids(everyone[1:])))  # not itself
        with decisive():
            rnd.unmask(0, everyone, signatures)
        return "client 0 revealed shares after refusing the survivor list"

    return attempt(f"continue-after-refused-{stage.replace('_', '-')}", p, f"The server sends a message the client "
                   f"refuses at {stage}, then sends the next stage's message anyway (the client must stay silent for "
                   "the rest of the round).", go)
