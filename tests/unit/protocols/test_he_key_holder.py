"""The HE key holder decrypts nothing the aggregator merely calls a sum (issue item 3).

The aggregator writes every byte of the SUM messages the key holder receives, so these tests play a
malicious aggregator: it holds the uploads of the round but no client's signing key. Before the fix
the key holder decrypted any ciphertext sent as a "sum" with a ``contributors`` count it could not
check (``secfl audit protocol`` showed "single-upload-as-sum" as not refused, out of scope).
"""

import numpy as np
import pytest

from secfl.exceptions import MalformedMessageError, ProtocolIntegrityError
from secfl.hazmat import crypto, ring, wire
from secfl.hazmat.codec import Writer
from secfl.protocols import he_messages as m
from secfl.protocols.he import HeSum
from secfl.protocols.he_roles import KeyHolder

from test_he import BITS, Round, fields  # the same hand-driven round

D = 300


@pytest.fixture
def rnd():
    return Round(d=D, groups=4)


@pytest.fixture
def spy(monkeypatch):
    """The groups the key holder actually decrypted."""
    decrypted, real = [], KeyHolder._decrypt

    def recording(self, vector):
        decrypted.append(vector)
        return real(self, vector)

    monkeypatch.setattr(KeyHolder, "_decrypt", recording)
    return decrypted


def ask(rnd, group, uploads, *, round_id=None):
    """What a malicious aggregator sends: any list of UPLOAD messages as the SUM of ``group``."""
    request = m.encode_sum(round_id or rnd.round_id, group, rnd.aggregator.digest, rnd.d, uploads)
    return rnd.aggregator.open_result(group, rnd.he.key_holder.decrypt(request))


def forged(rnd, cid, *, signer=None, signature=None, group=0, source=0):
    """Client ``source``'s ciphertext claimed as ``cid``'s, signed by ``signer`` (the aggregator's own key)."""
    round_id, _, _, digest, d, vector, _ = fields(rnd.upload(source, group=group))
    if signature is None:
        signature = crypto.sign(signer, m.upload_statement(round_id, group, cid, digest, d, vector))
    body = Writer().raw(round_id).u32(group).u32(cid).raw(digest).u32(d).blob(vector).blob(signature)
    return wire.frame(m.UPLOAD, body.payload())


@pytest.mark.parametrize("isolate", [True, False])
def test_the_key_holder_decrypts_the_sum_of_the_signed_uploads_it_adds_itself(isolate):
    rnd = Round(HeSum(bits=BITS, isolate=isolate), d=D, groups=2)
    got = rnd.total(1, rnd.uploads(1, (0, 1, 2)))
    assert np.array_equal(got, sum(ring.lift(rnd.values(c), BITS) for c in (0, 1, 2)))
    assert rnd.he.key_holder.clock["verify"] > 0 and rnd.he.key_holder.clock["add"] > 0


def test_one_upload_sent_as_a_sum_is_never_decrypted(rnd, spy):
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0)])
    assert not spy


@pytest.mark.parametrize("copies", [[0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 0]])
def test_a_duplicated_upload_is_refused(rnd, spy, copies):
    uploads = {c: rnd.upload(c) for c in set(copies)}
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [uploads[c] for c in copies])
    assert not spy


def test_an_upload_of_another_group_is_refused(rnd, spy):
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0), rnd.upload(1, group=1)])
    with pytest.raises(ProtocolIntegrityError):  # the whole group's uploads, re-labelled as group 2's
        ask(rnd, 2, [rnd.upload(0), rnd.upload(1)])
    assert not spy


def test_an_upload_of_another_round_is_refused(rnd, spy):
    old = Round(rnd.he, d=D)  # the key holder's previous round ...
    stale = old.upload(1)
    rnd = Round(rnd.he, d=D)  # ... and its current one
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0), stale])
    with pytest.raises(ProtocolIntegrityError):  # the old round's complete SUM
        ask(old, 1, [old.upload(0, group=1), old.upload(1, group=1)])
    assert not spy


@pytest.mark.parametrize("kind", ["aggregator-signed", "unsigned", "zero-signature", "unregistered", "other-client"])
def test_forged_or_unsigned_uploads_are_refused(rnd, spy, kind):
    signer, _ = crypto.ed25519_keypair()
    bad = {"aggregator-signed": lambda: forged(rnd, 1, signer=signer),
           "unsigned": lambda: forged(rnd, 1, signature=b""),
           "zero-signature": lambda: forged(rnd, 1, signature=bytes(64)),
           "unregistered": lambda: forged(rnd, 99, signer=signer),
           "other-client": lambda: forged(rnd, 1, signer=rnd.he.identity(2))}[kind]()
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0), bad])
    assert not spy


def test_a_client_counts_in_one_sum_per_round(rnd, spy):
    """Client 0, misled into signing for two groups, is counted in the first sum only."""
    ask(rnd, 0, [rnd.upload(0), rnd.upload(1)])
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 1, [rnd.upload(0, group=1), rnd.upload(2, group=1)])
    assert len(spy) == 1


def test_min_contributors_is_enforced_by_the_key_holder_itself(spy):
    rnd = Round(HeSum(bits=BITS, min_contributors=3), d=D, groups=2)
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0), rnd.upload(1)])
    assert not spy
    assert ask(rnd, 1, [rnd.upload(c, group=1) for c in (2, 3, 4)]).shape == (D,)


def test_a_refused_sum_uses_up_its_group(rnd, spy):
    with pytest.raises(ProtocolIntegrityError):
        ask(rnd, 0, [rnd.upload(0)])
    with pytest.raises(ProtocolIntegrityError):  # no second try with a better-looking SUM
        ask(rnd, 0, [rnd.upload(0), rnd.upload(1)])
    assert not spy


def test_malformed_sums_and_uploads_inside_them_are_refused(rnd, spy):
    honest = m.encode_sum(rnd.round_id, 0, rnd.aggregator.digest, D, [rnd.upload(0), rnd.upload(1)])
    count_at = 8 + 16 + 4 + 32 + 4
    huge_count = honest[:count_at] + (2**32 - 1).to_bytes(4, "little") + honest[count_at + 4:]
    for bad in (honest[:-1], honest + b"\0", huge_count, None):
        with pytest.raises(MalformedMessageError):
            rnd.he.key_holder.decrypt(bad)
    rnd = Round(rnd.he, d=D)
    with pytest.raises((MalformedMessageError, ProtocolIntegrityError)):
        ask(rnd, 0, [rnd.upload(0), rnd.upload(1)[:-3]])
    with pytest.raises(ProtocolIntegrityError):  # a SUM bound to another context fingerprint
        rnd.he.key_holder.decrypt(m.encode_sum(rnd.round_id, 1, bytes(32), D, [rnd.upload(0, group=1)]))
    assert not spy


def test_the_aggregator_forwards_only_uploads_it_checked(rnd):
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.sum_group(0, {0: rnd.upload(0), 1: rnd.upload(1, group=1)})
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.sum_group(0, {0: rnd.upload(0), 1: rnd.upload(0)})  # client 0's upload as client 1's
