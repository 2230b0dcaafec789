"""Adversaries against SecAgg/SecAgg+ over a bound instance.

A malicious server against honest clients: each move must get an error (``ProtocolIntegrityError``,
``MalformedMessageError`` or ``InsufficientParticipantsError``), never a share. Faulty clients
against an honest server: each must be excluded, never abort the round, and the sum over the rest
must be exact.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from secfl.exceptions import InsufficientParticipantsError, MalformedMessageError, ProtocolIntegrityError
from secfl.hazmat import crypto, prg, shamir
from secfl.hazmat.codec import Writer
from secfl.protocols import SecAgg, SecAggPlus
from secfl.protocols import secagg_client as sc
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import STAGES, SecAggClient
from secfl.protocols.secagg_instance import Instance
from secfl.protocols.secagg_round import run_instance

from secagg_harness import (
    Round, advertise_message, blobs_message, consistency_signature, conviction_message, header, ids_message,
    keys_message, proof, read_advertised, read_blobs, read_convictions, read_ids, read_keys, read_masked,
    read_pair_keys, read_shares, read_statements, request_message, shares_message,
)

ORDER_8_POINT = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def sparse():
    """SecAgg+ with k = 4 neighbours: over 8 clients every client has 3 non-neighbours (t = 3)."""
    return SecAggPlus(neighbours=4, dropout_rate=0.0)


# ============================================================================================
# A malicious server: the instance, the order of stages, replays
# ============================================================================================

def test_a_roster_without_the_client_or_of_the_wrong_size_is_refused_at_construction():
    protocol = SecAgg()
    params = protocol.params(4)
    common = dict(params=params, values=np.zeros(3, np.uint32), signing_key=protocol.identity(0),
                  directory=protocol.directory, record=protocol.client_record(0), input_key=bytes(32))
    session = os.urandom(16)
    with pytest.raises(ProtocolIntegrityError):  # the server invites client 0 to an instance it is not in
        SecAggClient(0, instance=Instance(session, 1, 0, (1, 2, 3, 4)), **common)
    with pytest.raises(ProtocolIntegrityError):  # a roster larger than the n the parameters were derived for
        SecAggClient(0, instance=Instance(session, 1, 0, (0, 1, 2, 3, 4)), **common)
    with pytest.raises(ProtocolIntegrityError):  # ... or smaller
        SecAggClient(0, instance=Instance(session, 1, 0, (0, 1, 2)), **common)
    SecAggClient(0, instance=Instance(session, 1, 0, (0, 1, 2, 3)), **common)  # the right one is fine


def _other_instance(old: Round, how: str) -> Round:
    """A second, independent instance differing from ``old`` in one field (own parties, own records)."""
    inst = old.instance
    fields = dict(session=inst.session, round_=inst.round, group=inst.group, roster=inst.roster)
    if how == "session":
        fields["session"] = os.urandom(16)
    elif how == "round":
        fields["round_"] = inst.round + 1
    elif how == "group":
        fields["group"] = inst.group + 1
    elif how == "roster":
        fields["roster"] = (*inst.roster[:-1], inst.roster[-1] + 1)
    return Round(protocol=SecAgg(), **fields)


@pytest.mark.parametrize("how", ["session", "round", "group", "roster"])
@pytest.mark.parametrize("stage", ["share_keys", "check_shares", "masked_input", "consistency_check", "unmask"])
def test_replay_from_another_instance_is_refused_at_the_header(how, stage):
    old = Round(n=4)
    new = _other_instance(old, how)
    assert new.instance.digest != old.instance.digest
    old.until(stage)
    new.until(stage)
    with pytest.raises(ProtocolIntegrityError):
        getattr(new.clients[0], stage)(old.replies[0])
    with pytest.raises(ProtocolIntegrityError):  # and the refusal ends the client's instance: no retry
        getattr(new.clients[0], stage)(new.replies[0])


def test_a_message_addressed_to_another_client_is_refused():
    rnd = Round(n=4)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[1].share_keys(rnd.replies[0])


def test_stages_out_of_order_are_refused():
    rnd = Round(n=4)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].advertise_keys()  # already advertised
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[1].masked_input(rnd.replies[1])  # skipping share_keys and check_shares
    keys = rnd.replies[2]
    rnd.step()
    with pytest.raises(MalformedMessageError):  # a KEYS message offered as CIPHERTEXTS
        rnd.clients[2].check_shares(keys)


# ============================================================================================
# KEYS (share_keys)
# ============================================================================================

def _forge(entry: m.KeyEntry) -> m.KeyEntry:
    """The server swaps its own keys into a genuine entry (the signature no longer verifies)."""
    _, public = crypto.x25519_keypair()
    return m.KeyEntry(entry.client, public, public, entry.commitment, entry.signature)


def test_a_forged_key_entry_gets_no_share():
    rnd = Round(n=5)  # t = 3
    entries = [_forge(e) if e.client == 2 else e for e in read_keys(rnd.replies[0])]
    shares = rnd.clients[0].share_keys(keys_message(rnd.to(0), entries))
    assert set(read_blobs(shares, m.SHARES)) == {1, 3, 4}  # nothing sealed under the server's key


def test_too_many_forged_entries_leave_fewer_than_t_and_no_share_is_sent():
    rnd = Round(n=5)
    entries = [_forge(e) if e.client in (2, 3) else e for e in read_keys(rnd.replies[0])]
    with pytest.raises(InsufficientParticipantsError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), entries))


def test_a_sybil_entry_is_refused():
    rnd = Round(n=4)
    _, public = crypto.x25519_keypair()
    sybil = m.KeyEntry(99, public, public, bytes(32), bytes(64))  # an id outside the roster
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), [*read_keys(rnd.replies[0])[:2], sybil]))


def test_the_clients_own_entry_in_its_key_list_is_refused():
    rnd = Round(n=4)
    own = read_advertised(rnd.sent[0])
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), [*read_keys(rnd.replies[0])[:2], own]))


def test_a_genuine_entry_of_a_non_neighbour_is_refused():
    rnd = Round(n=8, protocol=sparse())
    stranger = rnd.non_neighbour(0)
    entry = read_advertised(rnd.sent[stranger])  # correctly signed, but not 0's neighbour in this instance
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), [*read_keys(rnd.replies[0])[:3], entry]))


def test_a_repeated_entry_is_refused():
    rnd = Round(n=5)
    entries = read_keys(rnd.replies[0])
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), [entries[0], entries[0], entries[1]]))


def test_more_entries_than_neighbours_is_malformed():
    rnd = Round(n=4)
    entries = read_keys(rnd.replies[0])
    with pytest.raises(MalformedMessageError):
        rnd.clients[0].share_keys(keys_message(rnd.to(0), [*entries, entries[0]]))


# ============================================================================================
# CIPHERTEXTS (check_shares) and QUALIFIED (masked_input)
# ============================================================================================

def _rewrite_ciphertexts(client, change):
    def tamper(stage, direction, messages):
        if stage == "share_keys" and direction == "down":
            blobs = read_blobs(messages[client], m.CIPHERTEXTS)
            change(blobs)
            messages = {**messages, client: blobs_message(m.CIPHERTEXTS, header(messages[client]), blobs)}
        return messages
    return tamper


def test_a_tampered_share_ciphertext_is_not_accepted_and_never_revealed():
    def flip(blobs):
        blobs[1] = blobs[1][:20] + bytes([blobs[1][20] ^ 1]) + blobs[1][21:]

    rnd = Round(n=5, advertise=False, tamper=_rewrite_ciphertexts(0, flip))
    rnd.until("masked_input")
    assert read_ids(rnd.sent[0], m.ACCEPTED) == (2, 3, 4)  # client 0 reports that 1's share failed
    rnd.until("unmask")
    assert 1 not in read_shares(rnd.clients[0].unmask(rnd.replies[0]))


def test_swapped_ciphertexts_between_peers_are_not_accepted():
    def swap(blobs):
        blobs[1], blobs[2] = blobs[2], blobs[1]

    rnd = Round(n=5, advertise=False, tamper=_rewrite_ciphertexts(0, swap))
    rnd.until("masked_input")
    assert read_ids(rnd.sent[0], m.ACCEPTED) == (3, 4)  # the AAD binds sender and recipient


def test_a_ciphertext_from_a_peer_without_accepted_keys_is_refused():
    rnd = Round(n=5)
    rnd.step()
    blobs = read_blobs(rnd.replies[0], m.CIPHERTEXTS)
    blobs[0] = blobs.pop(1)  # "from" the client itself (a list of at most k blobs)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].check_shares(blobs_message(m.CIPHERTEXTS, rnd.to(0), blobs))


def test_a_qualified_list_with_a_non_neighbour_is_refused():
    rnd = Round(n=8, protocol=sparse())
    rnd.until("masked_input")
    qualified = {*read_ids(rnd.replies[0], m.QUALIFIED)[1:], rnd.non_neighbour(0)}  # at most k ids
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].masked_input(ids_message(m.QUALIFIED, rnd.to(0), qualified))


def test_a_qualified_list_with_the_client_itself_is_refused():
    rnd = Round(n=5)
    rnd.until("masked_input")
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].masked_input(ids_message(m.QUALIFIED, rnd.to(0), {0, 1, 2, 3}))


def test_a_qualified_list_below_t_is_refused_before_the_input_is_spent():
    rnd = Round(n=5)  # t = 3
    rnd.until("masked_input")
    client = rnd.clients[0]
    with pytest.raises(InsufficientParticipantsError):  # masking with 2 peers would leave a weak mask
        client.masked_input(ids_message(m.QUALIFIED, rnd.to(0), {1, 2}))
    assert client.input_key not in client.record


# ============================================================================================
# SURVIVORS (consistency_check)
# ============================================================================================

def test_a_survivor_list_with_a_non_neighbour_is_refused():
    rnd = Round(n=8, protocol=sparse())
    rnd.until("consistency_check")
    alive = {*read_ids(rnd.replies[0], m.SURVIVORS)[1:], rnd.non_neighbour(0)}  # at most k ids
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].consistency_check(ids_message(m.SURVIVORS, rnd.to(0), alive))


@pytest.mark.parametrize("extra", [0, 99], ids=["itself", "outside-roster"])
def test_a_survivor_list_with_the_client_or_a_stranger_is_refused(extra):
    rnd = Round(n=5)
    rnd.until("consistency_check")
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].consistency_check(ids_message(m.SURVIVORS, rnd.to(0), {1, 2, extra}))


def test_a_second_survivor_list_is_refused():
    rnd = Round(n=5)
    rnd.until("consistency_check")
    rnd.clients[0].consistency_check(rnd.replies[0])
    with pytest.raises(ProtocolIntegrityError):  # one signed statement per instance, ever
        rnd.clients[0].consistency_check(ids_message(m.SURVIVORS, rnd.to(0), {1, 2, 3}))


@pytest.mark.parametrize("told_dead", range(6))
def test_a_split_view_never_yields_t_shares_of_both_secrets_of_a_client(told_dead):
    """The server tells ``told_dead`` of client 5's neighbours that 5 dropped and the rest that it
    survived, then collects every share it can. It must never hold t shares of 5's self-mask seed
    AND t shares of its mask key (with both it could unmask 5's input)."""
    rnd = Round(n=6)  # complete graph, k = 5, t = 3
    rnd.until("consistency_check")
    victim, t = 5, rnd.params.threshold
    liars = set(range(told_dead))
    views = {c: sorted(rnd.neighbours(c) - ({victim} if c in liars else set())) for c in range(6)}
    statements = {}
    for c in range(6):
        reply = rnd.clients[c].consistency_check(ids_message(m.SURVIVORS, rnd.to(c), views[c]))
        statements[c] = (tuple(views[c]), consistency_signature(reply))
    revealed = {m.SELF_MASK: 0, m.KEY_SHARE: 0}
    for c in range(6):
        listed = {v: statements[v] for v in rnd.neighbours(c) if c in statements[v][0]}
        try:
            shares = read_shares(rnd.clients[c].unmask(request_message(rnd.to(c), listed)))
        except InsufficientParticipantsError:
            continue  # too few neighbours vouch for c: c reveals nothing
        if victim in shares:
            revealed[shares[victim][0]] += 1
    assert revealed[m.KEY_SHARE] == told_dead and revealed[m.SELF_MASK] == 5 - told_dead
    assert min(revealed.values()) < t


# ============================================================================================
# UNMASK_REQUEST (unmask)
# ============================================================================================

def _at_unmask(n=5, protocol=None):
    rnd = Round(n=n, protocol=protocol)
    rnd.until("unmask")
    return rnd, read_statements(rnd.replies[0])


def test_fewer_than_t_statements_are_refused():
    rnd, statements = _at_unmask()  # t = 3
    fewer = dict(list(statements.items())[:2])
    with pytest.raises(InsufficientParticipantsError):
        rnd.clients[0].unmask(request_message(rnd.to(0), fewer))


def test_a_genuine_statement_that_does_not_list_the_client_is_refused():
    rnd, statements = _at_unmask()
    alive = tuple(v for v in statements[1][0] if v != 0)  # neighbour 1 was told client 0 dropped, and signed it
    statements[1] = (alive, rnd.sign_alive(1, alive))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


def test_a_statement_changed_after_signing_is_refused():
    rnd, statements = _at_unmask(n=6)
    alive, signature = statements[1]
    statements[1] = (tuple(v for v in alive if v != 5), signature)  # "5 dropped": its key share would go out
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


def test_a_forged_statement_signature_is_refused():
    rnd, statements = _at_unmask()
    alive, signature = statements[2]
    statements[2] = (alive, signature[:-1] + bytes([signature[-1] ^ 1]))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


def test_a_statement_signed_by_another_instance_is_refused():
    rnd, statements = _at_unmask()
    other = Instance(os.urandom(16), rnd.instance.round, rnd.instance.group, rnd.instance.roster)
    alive = statements[3][0]
    statements[3] = (alive, crypto.sign(rnd.protocol.identity(3), sc.alive_message(other.digest, 3, alive)))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


def test_a_genuine_statement_by_a_non_neighbour_is_refused():
    rnd = Round(n=8, protocol=sparse())
    rnd.until("unmask")
    statements = read_statements(rnd.replies[0])
    del statements[min(statements)]  # at most k statements
    stranger = rnd.non_neighbour(0)
    alive = tuple(sorted({*sorted(rnd.neighbours(stranger))[1:], 0}))  # the stranger "vouches" for 0
    statements[stranger] = (alive, rnd.sign_alive(stranger, alive))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


@pytest.mark.parametrize("signer", [0, 99], ids=["itself", "outside-roster"])
def test_the_clients_own_or_a_strangers_statement_is_refused(signer):
    rnd, statements = _at_unmask()
    del statements[min(statements)]  # at most k statements
    statements[signer] = ((0, 1, 2, 3), bytes(64))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request_message(rnd.to(0), statements))


def test_a_repeated_signer_is_malformed():
    rnd, statements = _at_unmask()
    body = Writer().u32(len(statements) + 1)
    for signer in [*sorted(statements), min(statements)]:
        alive, signature = statements[signer]
        body.u32(signer).ids(alive).raw(signature)
    with pytest.raises(MalformedMessageError):
        rnd.clients[0].unmask(m.encode(m.UNMASK_REQUEST, rnd.to(0), body))


def test_a_second_unmask_request_is_refused():
    rnd, _ = _at_unmask()
    rnd.clients[0].unmask(rnd.replies[0])
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(rnd.replies[0])


def test_after_a_refused_request_the_genuine_one_gets_nothing():
    rnd, statements = _at_unmask()
    with pytest.raises(InsufficientParticipantsError):
        rnd.clients[0].unmask(request_message(rnd.to(0), dict(list(statements.items())[:1])))
    with pytest.raises(ProtocolIntegrityError):  # a refusal ends the instance for this client
        rnd.clients[0].unmask(rnd.replies[0])


# ============================================================================================
# The contribution record: one input, one instance
# ============================================================================================

@pytest.mark.parametrize("how", ["same-instance", "session", "group", "roster"])
def test_re_running_with_the_same_input_key_is_refused_at_masked_input(how):
    protocol = SecAgg()
    first = Round(n=4, protocol=protocol)
    first.run()
    inst = first.instance
    fields = dict(session=inst.session, group=inst.group, roster=inst.roster)
    if how == "session":
        fields["session"] = os.urandom(16)
    elif how == "group":
        fields["group"] = inst.group + 1
    elif how == "roster":
        fields["roster"] = (0, 1, 2, 5)
    again = Round(protocol=protocol, round_=inst.round, inputs=None, **fields)  # the same inputs' keys
    again.until("masked_input")
    with pytest.raises(ProtocolIntegrityError):  # the record refuses before the masked input leaves
        again.clients[0].masked_input(again.replies[0])


def test_an_aborted_instance_leaves_the_input_unspent_until_the_upload():
    protocol = SecAgg()
    rnd = Round(n=4, protocol=protocol)
    rnd.until("masked_input")
    assert all(c.input_key not in c.record for c in rnd.clients.values())
    rnd.step()
    assert all(c.input_key in c.record for c in rnd.clients.values())


# ============================================================================================
# Unrecoverable states: an error, never a sum
# ============================================================================================

def test_not_enough_shares_to_unmask_aborts():
    rnd = Round(n=5)
    rnd.until("unmask")
    with pytest.raises(InsufficientParticipantsError):
        rnd.step(skip={0, 1, 2})


def test_a_wrong_share_among_only_t_holders_is_located_by_its_signature_and_never_summed():
    rnd = Round(n=6)  # t = 3
    rnd.until("unmask")
    answers = {c: rnd.clients[c].unmask(rnd.replies[c]) for c in (0, 1, 2, 3)}  # 0's holders: 1, 2, 3 = t
    shares = read_shares(answers[1])
    kind, elements, other, signature = shares[0]
    shares[0] = (kind, (elements + 1) % shamir.PRIME, other, signature)
    answers[1] = shares_message(rnd.of(1), shares)
    with pytest.raises(InsufficientParticipantsError):  # t - 1 authentic shares left: no sum, no conviction
        rnd.server.receive_unmask(answers)
    assert rnd.server.rejected == {1}  # the dealer's signature names the holder that altered it, not the dealer
    assert not rnd.server.convicted


def test_the_honest_round_sum_is_exact():
    rnd = Round(n=5)
    assert np.array_equal(rnd.run(), rnd.expected(range(5)))


def test_the_harness_relays_exactly_like_run_instance():
    from secfl.hazmat.randomness import InsecureDeterministicRandomness

    def parties():
        protocol = SecAggPlus(neighbours=4, dropout_rate=0.0, randomness=InsecureDeterministicRandomness(b"h"))
        instance = Instance(bytes(16), 1, 0, tuple(range(8)))
        inputs = {c: np.full(3, c, np.uint32) for c in range(8)}
        return protocol, instance, inputs

    seen = []
    protocol, instance, inputs = parties()
    total, _ = run_instance(protocol.clients(instance, inputs), protocol.server(instance, length=3, dtype=np.uint32),
                            tamper=lambda s, d, msgs: seen.append((s, d, dict(msgs))) or msgs)
    stepped = []
    protocol, instance, inputs = parties()
    rnd = Round(protocol=protocol, session=instance.session, roster=instance.roster, d=3, inputs=inputs,
                tamper=lambda s, d, msgs: stepped.append((s, d, dict(msgs))) or msgs)
    assert np.array_equal(rnd.run(), total) and stepped == seen


# ============================================================================================
# Malformed input: MalformedMessageError from clients, a dropout at the server, never TypeError
# ============================================================================================

def test_server_treats_malformed_client_messages_as_dropouts():
    rnd = Round(n=6)
    replies = {c: rnd.clients[c].share_keys(r) for c, r in rnd.replies.items()}
    replies[3] = replies[3][:-5]  # truncated
    rnd.server.receive_shares(replies)
    assert rnd.server.rejected == {3}


@pytest.mark.parametrize("cut", [0, 5, 8, 30, -1])
def test_client_decoders_turn_garbage_into_malformed(cut):
    rnd = Round(n=4)
    message = rnd.replies[0]
    with pytest.raises(MalformedMessageError):
        rnd.clients[0].share_keys(message[:cut] if cut else b"\x00" * 40)


def test_oversized_message_is_malformed():
    rnd = Round(n=4)
    huge = m.encode(m.KEYS, rnd.to(0), Writer().u32(1).raw(bytes(rnd.clients[0].cap)))
    with pytest.raises(MalformedMessageError):
        rnd.clients[0].share_keys(huge)


def strided(message: bytes) -> memoryview:
    """The same bytes as a non-contiguous memoryview (every other byte of a twice-as-long buffer)."""
    buffer = bytearray(2 * len(message))
    buffer[::2] = message
    view = memoryview(buffer)[::2]
    assert not view.contiguous and bytes(view) == message
    return view


NOT_BYTES = [7, None, "a message", ["list"], 3.5]


@pytest.mark.parametrize("junk", NOT_BYTES, ids=repr)
@pytest.mark.parametrize("stage", STAGES[1:])
def test_clients_turn_non_bytes_into_malformed(stage, junk):
    rnd = Round(n=4)
    rnd.until(stage)
    with pytest.raises(MalformedMessageError):
        getattr(rnd.clients[0], stage)(junk)


@pytest.mark.parametrize("stage", STAGES[1:])
def test_clients_turn_strided_garbage_into_malformed(stage):
    rnd = Round(n=4)
    rnd.until(stage)
    with pytest.raises(MalformedMessageError):
        getattr(rnd.clients[0], stage)(strided(b"\x01" * 64))


def test_strided_memoryviews_are_valid_messages_both_ways():
    rnd = Round(n=5, advertise=False, tamper=lambda stage, direction, msgs: {c: strided(x) for c, x in msgs.items()})
    assert np.array_equal(rnd.run(), rnd.expected(range(5)))
    assert rnd.server.rejected == set()
    assert all(isinstance(x, bytes) for msgs in rnd.server.received.values() for x in msgs)


JUNK = [*NOT_BYTES, b"", memoryview(bytearray(64))[::2]]


@pytest.mark.parametrize("junk", JUNK, ids=repr)
@pytest.mark.parametrize("stage", STAGES[:-1])  # convict: below, the server asks only when a dealer cheated
def test_the_server_treats_non_bytes_as_a_dropout(stage, junk):
    def tamper(at, direction, messages):
        if at == stage and direction == "up":
            messages = {**messages, 2: junk}
        return messages

    rnd = Round(n=6, advertise=False, tamper=tamper)
    total = rnd.run()
    assert 2 in rnd.server.rejected
    assert (2 in rnd.server.survivors) == (STAGES.index(stage) > STAGES.index("masked_input"))
    assert np.array_equal(total, rnd.expected(rnd.server.survivors))


def _convicting_round(junk):
    """n = 5, client 3 deals shares of a seed other than the one it committed to; client 2 answers
    the server's CONVICTION with ``junk``."""
    def tamper(at, direction, messages):
        if at == "convict" and direction == "up":
            messages = {**messages, 2: junk}
        return messages

    rnd = Round(n=5, tamper=tamper)
    rnd.clients[3].b_seed = os.urandom(32)  # after its commitment went out
    return rnd


@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_non_bytes_in_answer_to_a_conviction_is_a_dropout_that_leaves_no_exact_sum(junk):
    rnd = _convicting_round(junk)
    with pytest.raises(InsufficientParticipantsError):  # 2's pairwise key with the convicted 3 is missing
        rnd.run()
    assert 2 in rnd.server.rejected and 3 in rnd.server.convicted


@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_an_unasked_answer_at_convict_is_ignored(junk):
    def tamper(at, direction, messages):
        return {**messages, 2: junk} if (at, direction) == ("convict", "up") else messages

    rnd = Round(n=5, tamper=tamper)
    assert np.array_equal(rnd.run(), rnd.expected(range(5)))
    assert rnd.server.rejected == set() and rnd.server.survivors == tuple(range(5))


# ============================================================================================
# Faulty clients against an honest server: excluded, the round completes, the sum is exact
# ============================================================================================

def faulty_round(tamper, *, n=5, protocol=None, dropped_by=lambda stage: set(), d=8):
    """One instance through ``run_instance`` with ``tamper(protocol, instance)`` rewriting messages."""
    protocol = protocol or SecAgg()
    instance = Instance(os.urandom(16), 1, 0, tuple(range(n)))
    rng = np.random.default_rng(n)
    inputs = {c: rng.integers(0, 2**32, size=d, dtype=np.uint32) for c in range(n)}
    server = protocol.server(instance, length=d, dtype=np.uint32)
    total, _ = run_instance(protocol.clients(instance, inputs), server, tamper=tamper(protocol, instance),
                            dropped_by=dropped_by)
    expected = np.sum([inputs[c] for c in server.survivors], axis=0, dtype=np.uint32)
    assert np.array_equal(total, expected), "not the exact sum over the survivors"
    return server


def resigned(protocol, instance, message, **fields) -> bytes:
    """The client's advertisement with some fields replaced, correctly signed by that client."""
    entry = read_advertised(message)
    values = dict(c_public=entry.c_public, s_public=entry.s_public, commitment=entry.commitment)
    values.update(fields)
    unsigned = m.KeyEntry(entry.client, values["c_public"], values["s_public"], values["commitment"], b"")
    signature = crypto.sign(protocol.identity(entry.client), sc.advertise_message(instance.digest, unsigned))
    head = m.Header(instance.digest, entry.client, m.SERVER)
    return advertise_message(head, m.KeyEntry(entry.client, unsigned.c_public, unsigned.s_public,
                                              unsigned.commitment, signature))


def at(stage, direction, change):
    """A tamper factory rewriting the messages of one (stage, direction)."""
    def factory(protocol, instance):
        def tamper(s, d, messages):
            return change(protocol, instance, dict(messages)) if (s, d) == (stage, direction) else messages
        return tamper
    return factory


@pytest.mark.parametrize("key", [bytes(32), ORDER_8_POINT], ids=["zero", "order-8"])
@pytest.mark.parametrize("field", ["c_public", "s_public"])
def test_a_client_advertising_a_low_order_key_is_excluded(field, key):
    def change(protocol, instance, messages):
        messages[3] = resigned(protocol, instance, messages[3], **{field: key})
        return messages

    server = faulty_round(at("advertise_keys", "up", change))
    assert 3 in server.rejected and 3 not in server.keys
    assert server.survivors == (0, 1, 2, 4)


@pytest.mark.parametrize("key", [bytes(32), ORDER_8_POINT], ids=["zero", "order-8"])
def test_an_honest_client_excludes_a_low_order_neighbour_the_server_relays(key):
    rnd = Round(n=5)
    entries = read_keys(rnd.replies[0])
    entry = next(e for e in entries if e.client == 3)
    unsigned = m.KeyEntry(3, key, key, entry.commitment, b"")
    signature = crypto.sign(rnd.protocol.identity(3), sc.advertise_message(rnd.instance.digest, unsigned))
    entries = [m.KeyEntry(3, key, key, entry.commitment, signature) if e.client == 3 else e for e in entries]
    shares = rnd.clients[0].share_keys(keys_message(rnd.to(0), entries))
    assert set(read_blobs(shares, m.SHARES)) == {1, 2, 4}


@pytest.mark.parametrize("fields", [("c_public",), ("c_public", "s_public")], ids=["c", "c+s"])
def test_a_client_copying_another_clients_round_keys_is_excluded(fields):
    def change(protocol, instance, messages):
        victim = read_advertised(messages[0])
        messages[3] = resigned(protocol, instance, messages[3], **{f: getattr(victim, f) for f in fields})
        return messages

    server = faulty_round(at("advertise_keys", "up", change))
    assert server.survivors == (0, 1, 2, 4)


@pytest.mark.parametrize("drops", [True, False], ids=["drops-before-upload", "stays"])
def test_a_client_copying_only_another_clients_mask_key_is_convicted_or_garbles_only_its_own_input(drops):
    """Client 3 advertises client 0's s_public (0 excludes it; 1, 2, 4 mask with it under a key 3 cannot
    compute). If 3 drops before its upload, its key shares rebuild an s_sk that is not the advertised
    s_pk's: 3 is convicted by its own signatures and the sum over the rest is exact. If it stays, its
    pairwise masks do not cancel: the sum is every honest input exactly plus a value that depends only
    on 3's pairwise keys, the same as 3 choosing another input (SPEC section 4)."""
    rnd = Round(n=5, advertise=False)

    def tamper(stage, direction, messages):
        if (stage, direction) == ("advertise_keys", "up"):
            copied = read_advertised(messages[0]).s_public
            messages = {**messages, 3: resigned(rnd.protocol, rnd.instance, messages[3], s_public=copied)}
        return messages

    rnd.tamper = tamper
    rnd.until("masked_input")
    rnd.step(skip={3} if drops else set())
    assert 3 not in rnd.clients[0].keys and all(3 in rnd.clients[v].masked_with for v in (1, 2, 4))
    total = rnd.run()
    if drops:
        assert set(rnd.server.convicted) == {3} and rnd.server.convicted[3][0] == m.KEY_SHARE
        assert rnd.server.survivors == (0, 1, 2, 4)
        assert np.array_equal(total, rnd.expected(rnd.server.survivors))
        return
    assert not rnd.server.convicted and rnd.server.survivors == tuple(range(5))
    residual = np.zeros(rnd.d, dtype=np.uint32)  # 3's masks minus what its peers expect from it
    assert rnd.clients[3].masked_with == (1, 2, 4)
    for v in rnd.clients[3].masked_with:
        prg.add_mask(residual, rnd.clients[3].keys[v][1], sign=1 if 3 < v else -1)
        prg.add_mask(residual, rnd.clients[v].keys[3][1], sign=1 if v < 3 else -1)
    assert np.any(residual)
    assert np.array_equal(total, rnd.expected(range(5)) + residual)


@pytest.mark.parametrize("targets, qualified", [((0, 1, 2, 4), False), ((0, 1), False), ((4,), True)],
                         ids=["all", "two", "one"])
def test_a_client_sending_garbage_share_ciphertexts_is_excluded_or_harmless(targets, qualified):
    """n = 5, t = 3: client 3 is qualified only while at least t neighbours decrypt its shares."""
    def change(protocol, instance, messages):
        blobs = read_blobs(messages[3], m.SHARES)
        for v in targets:
            blobs[v] = os.urandom(m.SHARE_CIPHERTEXT)
        messages[3] = blobs_message(m.SHARES, m.Header(instance.digest, 3, m.SERVER), blobs)
        return messages

    server = faulty_round(at("share_keys", "up", change))
    assert (3 in server.qualified) == qualified
    assert server.survivors == ((0, 1, 2, 3, 4) if qualified else (0, 1, 2, 4))
    assert all(3 not in server.accepted[v] for v in targets)


@pytest.mark.parametrize("owner, dropped", [(0, None), (5, 5)], ids=["self-mask", "key-of-dropout"])
def test_one_wrong_shamir_share_at_unmask_is_located_and_excluded(owner, dropped):
    """n = 6, t = 3: five holders answer, one lies; Berlekamp-Welch finds it and the sum stays exact."""
    def change(protocol, instance, messages):
        shares = read_shares(messages[1])
        kind, elements, other, signature = shares[owner]
        shares[owner] = (kind, (elements + 12345) % shamir.PRIME, other, signature)
        messages[1] = shares_message(m.Header(instance.digest, 1, m.SERVER), shares)
        return messages

    def dropped_by(stage):
        return {dropped} if dropped is not None and STAGES.index(stage) >= STAGES.index("masked_input") else set()

    server = faulty_round(at("unmask", "up", change), n=6, dropped_by=dropped_by)
    assert 1 in server.rejected
    assert server.survivors == tuple(c for c in range(6) if c != dropped)


@pytest.mark.parametrize("where", ["words", "peers", "signature"])
def test_an_on_path_change_of_one_byte_in_a_masked_upload_counts_as_no_upload(where):
    def change(protocol, instance, messages):
        message = bytearray(messages[2])
        peers, words, signature = read_masked(bytes(message), length=8)
        start = 8 + m.HEADER_BYTES  # frame header, then the SecAgg header
        offset = {"peers": start + 4 + 4 * len(peers) - 1,
                  "words": start + 4 + 4 * len(peers) + 5 + 13,
                  "signature": len(message) - 1}[where]
        message[offset] ^= 0x40
        messages[2] = bytes(message)
        return messages

    server = faulty_round(at("masked_input", "up", change))
    assert 2 in server.rejected and 2 not in server.masked
    assert server.survivors == (0, 1, 3, 4)


# ============================================================================================
# Dealer conviction: a dealer whose signed shares cannot rebuild what it advertised is convicted
# ============================================================================================

CHEATER = 3


def _deal_badly(rnd, how, monkeypatch):
    """Make client ``CHEATER`` of ``rnd`` (already advertised) deal shares that do not rebuild what it
    advertised: of another seed than it committed to, of another s_sk than its s_pk, or on a polynomial
    of degree t (every share signed, as an honest holder receives it)."""
    cheat = rnd.clients[CHEATER]
    if how == "seed":
        cheat.b_seed = os.urandom(32)
    elif how == "key":  # it must drop after the upload for its key to be rebuilt
        cheat.s_sk = os.urandom(32)
    elif how == "degree":
        split, seed = shamir.split, shamir.encode_secret(cheat.b_seed)

        def high_degree(secrets, *, xs, threshold, randomness):
            mine = np.array_equal(secrets[0], seed)  # the cheater's dealing
            return split(secrets, xs=xs, threshold=threshold + int(mine), randomness=randomness)

        monkeypatch.setattr(sc.shamir, "split", high_degree)


def _recording(rnd):
    """Record every message in flight, per (stage, direction), in ``rnd.log``."""
    rnd.log = {}

    def tamper(stage, direction, messages):
        rnd.log[stage, direction] = dict(messages)
        return messages
    rnd.tamper = tamper


@pytest.mark.parametrize("how, drops", [("seed", False), ("degree", False), ("key", True), ("seed", True)],
                         ids=["seed-stays", "degree-stays", "key-drops", "seed-drops"])
@pytest.mark.parametrize("protocol, n", [(SecAgg, 5), (sparse, 8)], ids=["secagg-5", "secagg+k4-8"])
def test_an_inconsistent_dealer_is_convicted_and_the_round_completes_without_it(protocol, n, how, drops,
                                                                                 monkeypatch):
    rnd = Round(n=n, protocol=protocol())
    _deal_badly(rnd, how, monkeypatch)
    _recording(rnd)
    rnd.until("masked_input")
    rnd.step(skip={CHEATER} if drops else set())  # dropped before its upload: its s_sk is rebuilt
    survivors = tuple(c for c in range(n) if c != CHEATER) if drops else tuple(range(n))
    masked_with = {c for c in survivors if CHEATER in rnd.clients[c].masked_with}
    total = rnd.run()
    if how == "seed" and drops:  # a bad seed of a client that dropped is never needed: nothing to convict
        assert not rnd.server.convicted and rnd.server.survivors == survivors
        assert np.array_equal(total, rnd.expected(survivors))
        return
    assert set(rnd.server.convicted) == {CHEATER}
    assert rnd.server.convicted[CHEATER][0] == (m.KEY_SHARE if drops else m.SELF_MASK)
    assert rnd.server.survivors == tuple(c for c in range(n) if c != CHEATER)
    assert np.array_equal(total, rnd.expected(rnd.server.survivors))
    # CONVICTION went exactly to the survivors that masked with the cheater, about the cheater only;
    # each revealed exactly its pairwise key with the cheater
    assert set(rnd.log["unmask", "down"]) == masked_with and len(masked_with) >= rnd.params.threshold
    for c, message in rnd.log["unmask", "down"].items():
        assert [owner for owner, _, _ in read_convictions(message)] == [CHEATER]
        assert read_pair_keys(rnd.log["convict", "up"][c]) == {CHEATER: rnd.clients[c].keys[CHEATER][1]}


def test_a_convicted_dealer_and_an_ordinary_dropout_in_one_instance():
    rnd = Round(n=7)  # t = 4, k = 6
    rnd.clients[CHEATER].b_seed = os.urandom(32)
    rnd.until("masked_input")
    rnd.step(skip={5})  # 5 dropped before its upload: its key is rebuilt, 3 is convicted
    total = rnd.run()
    assert set(rnd.server.convicted) == {CHEATER}
    assert rnd.server.survivors == (0, 1, 2, 4, 6)
    assert np.array_equal(total, rnd.expected(rnd.server.survivors))


# ---- a malicious server asking for pairwise keys ----------------------------------------------

def _after_unmask(n=5, protocol=None, cheat=False, monkeypatch=None):
    """A round stopped before the convict stage: (round, holder -> its revealed shares)."""
    rnd = Round(n=n, protocol=protocol)
    if cheat:
        _deal_badly(rnd, "seed", monkeypatch)
    rnd.until("unmask")
    answers = {c: rnd.clients[c].unmask(r) for c, r in rnd.replies.items()}
    requests = rnd.server.receive_unmask(answers)
    return rnd, {c: read_shares(a) for c, a in answers.items()}, requests


def _refused_with_no_key(client, message, error=ProtocolIntegrityError):
    with pytest.raises(error):
        client.convict(message)
    with pytest.raises(ProtocolIntegrityError):  # the refusal ends the client's instance
        client.convict(message)


def _mutate(kind, shares, how):
    shares = dict(shares)
    first = min(shares)
    elements, other, signature = shares[first]
    if how == "elements":
        shares[first] = ((elements + 1) % shamir.PRIME, other, signature)
    elif how == "other-digest":
        shares[first] = (elements, bytes(32), signature)
    elif how == "signature":
        shares[first] = (elements, other, signature[:-1] + bytes([signature[-1] ^ 1]))
    return shares


@pytest.mark.parametrize("how", ["genuine", "too-few", "elements", "other-digest", "signature", "other-kind"])
def test_a_conviction_of_an_honest_dealer_reveals_no_key(how):
    """The server shows client 0 the genuine signed self-mask shares of the honest client 3 (which rebuild
    its committed seed), or fewer than t of them, or a forged proof: no pairwise key comes out."""
    rnd, revealed, requests = _after_unmask()
    assert requests == {}  # nobody cheated
    kind, shares = proof({h: s for h, s in revealed.items() if h != CHEATER}, CHEATER)
    assert kind == m.SELF_MASK and len(shares) == 4
    if how == "too-few":
        shares = dict(list(shares.items())[:rnd.params.threshold - 1])
    elif how == "other-kind":
        kind = m.KEY_SHARE
    elif how != "genuine":
        shares = _mutate(kind, shares, how)
    _refused_with_no_key(rnd.clients[0], conviction_message(rnd.to(0), [(CHEATER, kind, shares)]))


@pytest.mark.parametrize("signer", ["server", "another-client"])
def test_shares_on_no_polynomial_signed_by_anyone_but_the_dealer_convict_no_one(signer):
    rnd, revealed, _ = _after_unmask()
    kind, shares = proof({h: s for h, s in revealed.items() if h != CHEATER}, CHEATER)
    key = crypto.ed25519_keypair()[0] if signer == "server" else rnd.protocol.identity(0)
    forged = {}
    for h, (elements, other, _) in shares.items():
        bad = (elements + h) % shamir.PRIME  # shares on no polynomial of degree < t: a proof, if 3 had signed
        message = sc.share_message(rnd.instance.digest, CHEATER, h, sc.signed_digests(kind, bad, other))
        forged[h] = (bad, other, crypto.sign(key, message))
    _refused_with_no_key(rnd.clients[1], conviction_message(rnd.to(1), [(CHEATER, kind, forged)]))


def test_a_genuine_proof_for_a_dealer_the_client_did_not_mask_with_is_refused(monkeypatch):
    rnd, _, requests = _after_unmask(n=8, protocol=sparse(), cheat=True, monkeypatch=monkeypatch)
    assert set(requests) == rnd.neighbours(CHEATER)
    ((owner, kind, shares),) = read_convictions(requests[min(requests)])
    stranger = rnd.non_neighbour(CHEATER)
    _refused_with_no_key(rnd.clients[stranger], conviction_message(rnd.to(stranger), [(owner, kind, shares)]))


def test_a_genuine_proof_with_an_honest_dealer_alongside_reveals_nothing(monkeypatch):
    rnd, revealed, requests = _after_unmask(cheat=True, monkeypatch=monkeypatch)
    ((owner, kind, shares),) = read_convictions(requests[0])
    honest_kind, honest = proof({h: s for h, s in revealed.items() if h != 4}, 4)
    message = conviction_message(rnd.to(0), [(owner, kind, shares), (4, honest_kind, honest)])
    _refused_with_no_key(rnd.clients[0], message)


def test_a_conviction_answered_once_and_never_twice(monkeypatch):
    rnd, _, requests = _after_unmask(cheat=True, monkeypatch=monkeypatch)
    ((owner, kind, shares),) = read_convictions(requests[0])
    repeated = conviction_message(rnd.to(0), [(owner, kind, shares), (owner, kind, shares)])
    _refused_with_no_key(rnd.clients[0], repeated)  # the same dealer twice in one message
    assert read_pair_keys(rnd.clients[1].convict(requests[1])) == {owner: rnd.clients[1].keys[owner][1]}
    _refused_with_no_key(rnd.clients[1], requests[1])  # a second request


def test_a_proof_from_another_instance_is_refused(monkeypatch):
    """A genuine proof that client 3 cheated in one instance convicts it in no other (the signatures are
    bound to the instance digest)."""
    protocol = SecAgg()
    rnd, _, requests = _after_unmask(protocol=protocol, cheat=True, monkeypatch=monkeypatch)
    ((owner, kind, shares),) = read_convictions(requests[0])
    other = Round(n=5, protocol=protocol, round_=2)  # the same long-term keys, a fresh input
    other.until("unmask")
    for c, r in other.replies.items():
        other.clients[c].unmask(r)
    _refused_with_no_key(other.clients[0], conviction_message(other.to(0), [(owner, kind, shares)]))


def test_a_conviction_addressed_to_another_client_or_before_unmask_is_refused(monkeypatch):
    rnd, _, requests = _after_unmask(cheat=True, monkeypatch=monkeypatch)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[1].convict(requests[0])  # header names client 0
    early = Round(n=5)
    early.until("unmask")
    with pytest.raises(ProtocolIntegrityError):  # a CONVICTION in place of the unmask request: wrong stage
        early.clients[0].convict(conviction_message(early.to(0), []))


def test_a_dealer_that_signs_one_share_off_its_polynomial_is_blamed_not_the_holder(monkeypatch):
    """The sum is rebuilt around the bad share; the signature on it shows who dealt it."""
    from secfl.hazmat import shamir
    from secfl.protocols import secagg_client

    protocol, n, cheat = SecAgg(), 6, 3
    instance = Instance(os.urandom(16), 1, 0, tuple(range(n)))
    values = {c: np.full(4, c, np.uint32) for c in range(n)}
    clients, server = protocol.clients(instance, values), protocol.server(instance, length=4, dtype=np.uint32)
    split = shamir.split

    def one_bad_share(secrets, *, xs, threshold, randomness):
        shares = split(secrets, xs=xs, threshold=threshold, randomness=randomness)
        if np.array_equal(secrets[0], shamir.encode_secret(clients[cheat].b_seed)):
            shares[0, 0, 0] = (shares[0, 0, 0] + 1) % shamir.PRIME  # holder 0's share, signed by the dealer
        return shares

    monkeypatch.setattr(secagg_client.shamir, "split", one_bad_share)
    total, _ = run_instance(clients, server)
    assert np.array_equal(total, sum(values.values()))
    assert server.rejected == {cheat}
