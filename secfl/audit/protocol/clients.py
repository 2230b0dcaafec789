"""SecAgg / SecAgg+ attempts by one faulty registered client, and by the network on the clients' uploads.

Threat model: the cheat is a client of the directory with its own long-term key, running the
honest client code except for the message it rewrites (through ``run_instance``'s ``tamper``). It
tries to make the group abort: a low-order X25519 key, another client's round keys, garbage share
ciphertexts, signed shares that cannot rebuild what it advertised (off any degree t - 1 polynomial,
of another seed than it committed to, of another key than its s_pk), or a wrong Shamir share at
unmask. The network attacker changes or replays a masked upload in flight. The server and the other
clients are honest. Each attempt must end with the cheat excluded (convicted, or flagged if its
input was already in) and the round's sum equal to the plaintext sum of the clients that count:
never an abort, never a silently changed sum (``harness.excluded``).
"""

from __future__ import annotations

import os

import numpy as np

from secfl.audit.protocol.base import Attempt, attempt, flip_bit, refusals
from secfl.audit.protocol.harness import Group, Round, body, deals_badly, excluded
from secfl.hazmat import crypto, shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES, advertise_message, share_aad, share_digest, share_message

CHEAT = 2
# X25519 public keys whose shared secret is all-zero or fixed (RFC 7748 section 6.1; Bernstein's list)
LOW_ORDER = {
    "0": bytes(32),
    "1": (1).to_bytes(32, "little"),
    "order-8 (e0eb...)": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "order-8 (5f9c...)": bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    "p - 1": (2**255 - 20).to_bytes(32, "little"),
    "p": (2**255 - 19).to_bytes(32, "little"),
    "p + 1": (2**255 - 18).to_bytes(32, "little"),
    "0 with the top bit set": bytes(31) + b"\x80",
}


def _entry(rnd: Round, c: int, c_public: bytes, s_public: bytes) -> bytes:
    """An ADVERTISE from c with the given round keys, validly signed with c's own long-term key."""
    commitment = m.read_entry(body(rnd.log["advertise_keys", "up"][c], m.ADVERTISE)).commitment
    unsigned = m.KeyEntry(c, c_public, s_public, commitment, b"")
    signature = crypto.sign(rnd.group.protocol.identity(c), advertise_message(rnd.digest, unsigned))
    return m.encode(m.ADVERTISE, rnd.of(c), m.write_entry(Writer(), m.KeyEntry(c, c_public, s_public, commitment,
                                                                                signature)))


def _at(stage: str, direction: str, change):
    def tamper(s: str, d: str, messages: dict) -> dict:
        return change(messages) if (s, d) == (stage, direction) else messages
    return tamper


def low_order_key(p: str) -> Attempt:
    def one(label: str, point: bytes, which: str):
        rnd = Round(p)

        def change(messages):
            rnd.log["advertise_keys", "up"] = messages
            entry = m.read_entry(body(messages[CHEAT], m.ADVERTISE))
            keys = {"c": (point, entry.s_public), "s": (entry.c_public, point), "both": (point, point)}[which]
            return {**messages, CHEAT: _entry(rnd, CHEAT, *keys)}

        return excluded(rnd, lambda: rnd.run(_at("advertise_keys", "up", change)), CHEAT,
                        f"a low-order key ({label}) as {which} key")

    variants = [(f"{label} as c", lambda x=point, label=label: one(label, x, "c")) for label, point in LOW_ORDER.items()]
    variants += [(f"{label} as {which}", lambda x=point, label=label, which=which: one(label, x, which))
                 for label, point in list(LOW_ORDER.items())[:3] for which in ("s", "both")]
    return attempt("low-order-round-key", p, f"A registered client advertises a low-order X25519 point ({len(LOW_ORDER)} "
                   "points) as a round key, validly signed, to make its neighbours' key agreement fail.",
                   lambda: refusals(variants))


def copied_keys(p: str) -> Attempt:
    def go():
        rnd, victim = Round(p), 0

        def change(messages):
            rnd.log["advertise_keys", "up"] = messages
            theirs = m.read_entry(body(messages[victim], m.ADVERTISE))
            return {**messages, CHEAT: _entry(rnd, CHEAT, theirs.c_public, theirs.s_public)}

        return excluded(rnd, lambda: rnd.run(_at("advertise_keys", "up", change)), CHEAT,
                        f"client {victim}'s round keys re-signed by client {CHEAT}")

    return attempt("copied-round-keys", p, f"Client {CHEAT} advertises client 0's round keys under its own "
                   "signature (client 0 sees its own keys; the others cannot agree keys with it).", go)


def garbage_shares(p: str) -> Attempt:
    def go():
        rnd = Round(p)

        def change(messages):
            blobs = m.read_blobs(body(messages[CHEAT], m.SHARES), max_count=rnd.group.n,
                                 blob_size=m.SHARE_CIPHERTEXT)
            garbage = {v: os.urandom(m.SHARE_CIPHERTEXT) for v in blobs}
            return {**messages, CHEAT: m.encode(m.SHARES, rnd.of(CHEAT), m.write_blobs(Writer(), garbage))}

        return excluded(rnd, lambda: rnd.run(_at("share_keys", "up", change)), CHEAT, "garbage share ciphertexts")

    return attempt("garbage-share-ciphertexts", p, f"Client {CHEAT} sends right-sized random bytes as the encrypted "
                   "shares to every neighbour.", go)


def inconsistent_dealing(p: str) -> Attempt:
    def high_degree():  # every share signed by the cheat, so every neighbour accepts it
        rnd = Round(p)

        def change(messages):
            cheat = rnd.clients[CHEAT]
            holders = sorted(cheat.keys)
            secrets = np.stack([shamir.encode_secret(cheat.b_seed), shamir.encode_secret(cheat.s_sk)])
            shares = shamir.split(secrets, xs=[v + 1 for v in holders], threshold=rnd.t + 1)  # degree t, not t - 1
            blobs = {}
            for v, share in zip(holders, shares):
                digests = (share_digest(share[m.SELF_MASK]), share_digest(share[m.KEY_SHARE]))
                signature = crypto.sign(rnd.group.protocol.identity(CHEAT),
                                        share_message(rnd.digest, CHEAT, v, digests))
                plaintext = Writer().u32(CHEAT).u32(v).raw(share.astype("<u4").tobytes()).raw(signature).payload()
                blobs[v] = crypto.seal(cheat.keys[v][0], plaintext, aad=share_aad(rnd.digest, CHEAT, v))
            return {**messages, CHEAT: m.encode(m.SHARES, rnd.of(CHEAT), m.write_blobs(Writer(), blobs))}

        return excluded(rnd, lambda: rnd.run(_at("share_keys", "up", change)), CHEAT,
                        "signed shares of a polynomial of degree t")

    def other_secret(how: str):
        rnd = Round(p)
        drops = how == "key"  # its key is rebuilt only if it drops before its upload
        gone = {CHEAT} if drops else set()
        return excluded(rnd, lambda: rnd.run(deals_badly(rnd, CHEAT, how), dropped_by=lambda stage: gone if
                                             STAGES.index(stage) >= STAGES.index("masked_input") else set()),
                        CHEAT, "signed shares of another seed than committed" if how == "seed"
                        else "signed shares of another key than its s_pk, then a drop")

    return attempt("inconsistent-shamir-dealing", p, f"Client {CHEAT} deals signed shares that cannot rebuild what "
                   "it advertised (3 variants): on a polynomial of degree t, of another self-mask seed than it "
                   "committed to, of another mask key than its s_pk (then drops before its upload). Every "
                   "neighbour accepts them; the server must convict it from its own signatures and complete "
                   "without it.", lambda: refusals([("degree t", high_degree),
                                                    ("another seed", lambda: other_secret("seed")),
                                                    ("another key, then a drop", lambda: other_secret("key"))]))


def wrong_share(p: str) -> Attempt:
    def go():
        rnd = Round(p)

        def change(messages):
            shares = m.read_shares(body(messages[CHEAT], m.UNMASK), max_count=rnd.group.n)
            u = min(shares)
            kind, elements, other, signature = shares[u]
            shares[u] = (kind, (elements + 1) % shamir.PRIME, other, signature)
            return {**messages, CHEAT: m.encode(m.UNMASK, rnd.of(CHEAT), m.write_shares(Writer(), shares))}

        return excluded(rnd, lambda: rnd.run(_at("unmask", "up", change)), CHEAT, "a wrong Shamir share",
                        counted=True)

    return attempt("wrong-shamir-share-at-unmask", p, f"Client {CHEAT} answers the unmask request with one share off "
                   "its dealer's polynomial (the dealer's signature no longer verifies).", go)


# The network on the masked uploads ------------------------------------------------------------------

def tampered_upload(p: str) -> Attempt:
    victim = 1

    def one(label: str, rewrite):
        rnd = Round(p)

        def change(messages):
            return {**messages, victim: rewrite(rnd, messages)}

        return excluded(rnd, lambda: rnd.run(_at("masked_input", "up", change)), victim, f"a changed upload ({label})")

    def at(offset_from_end: int):
        return lambda rnd, msgs: flip_bit(msgs[victim], len(msgs[victim]) - offset_from_end)

    variants = {
        "one word's bit": at(m.SIG_BYTES + 4),
        "a signature bit": at(1),
        "a peer id bit": lambda rnd, msgs: flip_bit(msgs[victim], 8 + m.HEADER_BYTES + 4),
        "words swapped for zeros": lambda rnd, msgs: _zero_words(msgs[victim]),
        "another client's upload": lambda rnd, msgs: msgs[min(c for c in msgs if c != victim)],
    }
    return attempt("tampered-masked-upload", p, "The network changes a client's signed masked upload in flight "
                   f"({len(variants)} variants).", lambda: refusals(
                       [(label, lambda f=f, label=label: one(label, f)) for label, f in variants.items()]))


def _zero_words(upload: bytes) -> bytes:
    size = 5 + m.SIG_BYTES + 4 * 8  # words: itemsize u8, count u32, 8 x 4 bytes, then the signature
    return upload[: len(upload) - size] + upload[len(upload) - size: len(upload) - size + 5] + bytes(32) + \
        upload[len(upload) - m.SIG_BYTES:]


def replayed_upload(p: str) -> Attempt:
    def go():
        group, victim = Group(p), 1
        old = Round(group, input_round=1)
        old.run()
        new = Round(group, input_round=2)

        def change(messages):
            return {**messages, victim: old.log["masked_input", "up"][victim]}

        return excluded(new, lambda: new.run(_at("masked_input", "up", change)), victim,
                        "an upload from another instance")

    return attempt("replay-upload-other-instance", p, "The network replays a client's masked upload of the previous "
                   "instance (round 1) in place of its upload of round 2.", go)
