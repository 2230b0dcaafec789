"""A malicious server against honest SecAgg clients: each move must get an error, never a share."""

import numpy as np
import pytest

from secfl.exceptions import InsufficientParticipantsError, MalformedMessageError, ProtocolIntegrityError
from secfl.hazmat import crypto
from secfl.hazmat.codec import Reader, Writer
from secfl.hazmat.wire import unframe
from secfl.protocols import SecAgg
from secfl.protocols import secagg_messages as m

from secagg_harness import Round


def unmask_request(rnd, client, survivors, dropped, signatures):
    body = Writer().ids(sorted(survivors)).ids(sorted(dropped)).u32(len(signatures))
    for signer in sorted(signatures):
        body.u32(signer).raw(signatures[signer])
    return m.encode(m.UNMASK_REQUEST, rnd.to(client), body)


def signatures_of(rnd):
    """The consistency signatures the clients sent (taken from their CONSISTENCY messages)."""
    return {c: unframe(msg, kind=m.CONSISTENCY)[36:] for c, msg in rnd.sent.items()}


def test_listing_a_client_both_dropped_and_surviving_gets_an_error_not_a_share():
    rnd = Round(n=5)
    rnd.until("consistency_check")
    rnd.step()  # clients sign the survivor list {0..4}
    sigs = signatures_of(rnd)
    # ask client 0 for its shares while claiming client 2 is dead AND alive: it must refuse
    request = unmask_request(rnd, 0, survivors=range(5), dropped=[2], signatures=sigs)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request)


def test_a_dead_list_that_contradicts_the_signed_survivors_is_refused():
    rnd = Round(n=5)
    rnd.until("consistency_check")
    rnd.step()
    sigs = signatures_of(rnd)
    # survivors list changed after signing: client 2 now "dropped" so its key share would be revealed
    request = unmask_request(rnd, 0, survivors=[0, 1, 3, 4], dropped=[2], signatures=sigs)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(request)


def test_inconsistent_survivor_lists_fail_the_signature_check():
    rnd = Round(n=6)
    rnd.until("consistency_check")
    # the server shows client 0 a list without client 5 and everyone else the full list
    survivors_for = {c: [0, 1, 2, 3, 4] if c == 0 else list(range(6)) for c in range(6)}
    consist = {c: rnd.clients[c].consistency_check(m.encode(m.SURVIVORS, rnd.to(c), Writer().ids(survivors_for[c])))
               for c in range(6)}
    sigs = {c: unframe(msg, kind=m.CONSISTENCY)[36:] for c, msg in consist.items()}
    request = unmask_request(rnd, 0, survivors=[0, 1, 2, 3, 4], dropped=[5], signatures=sigs)
    with pytest.raises(ProtocolIntegrityError):  # the others signed another list
        rnd.clients[0].unmask(request)


def test_too_few_signatures_are_refused():
    rnd = Round(n=5)
    rnd.until("consistency_check")
    rnd.step()
    sigs = dict(list(signatures_of(rnd).items())[:2])  # t = 3
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(unmask_request(rnd, 0, survivors=range(5), dropped=[], signatures=sigs))


def test_a_second_unmask_request_is_refused():
    rnd = Round(n=5)
    rnd.until("unmask")
    rnd.clients[0].unmask(rnd.replies[0])
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].unmask(rnd.replies[0])


def test_replay_from_another_round_or_session_is_refused():
    protocol = SecAgg()
    old = Round(n=4, protocol=protocol, round_=1)
    new = Round(n=4, protocol=protocol, round_=2, session=old.header.session)
    with pytest.raises(ProtocolIntegrityError):
        new.clients[0].share_keys(old.replies[0])  # same session, earlier round
    other = Round(n=4, protocol=protocol, round_=1)
    with pytest.raises(ProtocolIntegrityError):
        other.clients[0].share_keys(old.replies[0])  # another session
    with pytest.raises(ProtocolIntegrityError):
        old.clients[1].share_keys(old.replies[0])  # addressed to another client


def test_stages_out_of_order_are_refused():
    rnd = Round(n=4)
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].advertise_keys()  # already advertised
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[1].masked_input(rnd.replies[1])  # skipping share_keys


def test_tampered_share_ciphertext_is_detected():
    rnd = Round(n=5)
    replies = rnd.step()  # CIPHERTEXTS addressed to each client
    reader = Reader(unframe(replies[0], kind=m.CIPHERTEXTS))
    reader.raw(36)
    blobs = m.read_blobs(reader, max_count=5, blob_size=m.SHARE_CIPHERTEXT)
    peer = next(iter(blobs))
    blobs[peer] = blobs[peer][:20] + bytes([blobs[peer][20] ^ 1]) + blobs[peer][21:]
    forged = m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs))
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].masked_input(forged)


def test_swapped_ciphertexts_between_peers_are_detected():
    rnd = Round(n=5)
    replies = rnd.step()
    reader = Reader(unframe(replies[0], kind=m.CIPHERTEXTS))
    reader.raw(36)
    blobs = m.read_blobs(reader, max_count=5, blob_size=m.SHARE_CIPHERTEXT)
    a, b = sorted(blobs)[:2]
    blobs[a], blobs[b] = blobs[b], blobs[a]
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].masked_input(m.encode(m.CIPHERTEXTS, rnd.to(0), m.write_blobs(Writer(), blobs)))


def keys_message(rnd, entries):
    body = Writer().u32(len(entries))
    for entry in entries:
        m.write_entry(body, entry)
    return m.encode(m.KEYS, rnd.to(0), body)


def advertised(rnd):
    reader = Reader(unframe(rnd.replies[0], kind=m.KEYS))
    reader.raw(36)
    return [m.read_entry(reader) for _ in range(reader.u32())]


def test_forged_or_sybil_keys_are_refused():
    rnd = Round(n=4)
    entries = advertised(rnd)
    private, public = crypto.x25519_keypair()
    forged = [entries[0], entries[1], m.KeyEntry(entries[2].client, public, public, entries[2].commitment,
                                                 entries[2].signature), entries[3]]
    with pytest.raises(ProtocolIntegrityError):  # the server swapped in its own key for client 2
        rnd.clients[0].share_keys(keys_message(rnd, forged))
    rnd = Round(n=4)
    entries = advertised(rnd)
    sybil = m.KeyEntry(99, public, public, bytes(32), bytes(64))
    with pytest.raises(ProtocolIntegrityError):  # an id the directory does not know
        rnd.clients[0].share_keys(keys_message(rnd, [*entries[:3], sybil]))
    rnd = Round(n=4)
    with pytest.raises(MalformedMessageError):  # more entries than the group has members
        rnd.clients[0].share_keys(keys_message(rnd, [*advertised(rnd), sybil]))


def test_leaving_the_client_out_of_its_own_key_list_is_refused():
    rnd = Round(n=4)
    entries = [e for e in advertised(rnd) if e.client != 0]
    with pytest.raises(ProtocolIntegrityError):
        rnd.clients[0].share_keys(keys_message(rnd, entries))


def test_a_lying_client_share_is_caught_by_the_commitment_not_summed():
    rnd = Round(n=6)  # t = 3
    rnd.until("unmask")
    # client 1 answers the unmasking honestly in form but with a corrupted share of client 0's seed
    honest = rnd.clients[1].unmask(rnd.replies[1])
    reader = Reader(unframe(honest, kind=m.UNMASK))
    reader.raw(36)
    shares = m.read_shares(reader, max_count=6)
    kind, elements = shares[0]
    shares[0] = (kind, (elements + 1) % (2**31 - 1))
    bad = m.encode(m.UNMASK, m.Header(rnd.header.session, 1, 0, 1, m.SERVER), m.write_shares(Writer(), shares))
    answers = {c: rnd.clients[c].unmask(rnd.replies[c]) for c in (0, 2, 3)}  # client 0's holders: 1, 2, 3 = t
    with pytest.raises(ProtocolIntegrityError):
        rnd.server.receive_unmask({**answers, 1: bad})


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


def test_not_enough_shares_to_unmask_aborts():
    rnd = Round(n=5)
    rnd.until("unmask")
    with pytest.raises(InsufficientParticipantsError):
        rnd.step(skip={0, 1, 2})


def test_honest_round_sum_is_exact():
    rnd = Round(n=5)
    rnd.until("unmask")
    total = rnd.step()
    assert np.array_equal(total, np.sum(list(rnd.inputs.values()), axis=0, dtype=np.uint32))
