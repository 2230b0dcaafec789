"""HeSum: exact BFV sums, CKKS within tolerance, roles kept apart, and every bad upload refused."""

import os

import numpy as np
import pytest
import tenseal as ts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secfl.exceptions import (ConfigurationError, InsufficientParticipantsError, MalformedMessageError,
                              ProtocolError, ProtocolIntegrityError)
from secfl.hazmat import crypto, ring, wire
from secfl.hazmat.codec import Reader, Writer
from secfl.protocols import Plaintext
from secfl.protocols import he_messages as m
from secfl.protocols.he import HeSum
from secfl.protocols.he_roles import HeAggregator, HeClient, KeyHolder
from secfl.protocols.he_params import new_context
from secfl.stages.quantize import Quantize
from secfl.types import Bounds, DropoutSchedule, Update

D = 5000
BITS = 20


def quantized(n, *, d=D, group_size, scale=2.0**16, seed=0):
    """Words from a real Quantize stage bound to the group size, and its bits."""
    rng = np.random.default_rng(seed)
    stage = Quantize(scale=scale).bind(bound_in=Bounds(linf=1.0), group_size=group_size)
    raw = [Update(i, np.clip(rng.normal(0, 0.3, d), -1, 1).astype(np.float32)) for i in range(n)]
    return [stage.encode(u, rng=rng) for u in raw], stage.bits


def reals(n, *, d=D, seed=0):
    rng = np.random.default_rng(seed)
    return [Update(i, np.clip(rng.normal(0, 0.05, d), -1, 1).astype(np.float32)) for i in range(n)]


class Round:
    """The three roles of one round, driven by hand, so tests can play a malicious party."""

    def __init__(self, he=None, d=D, groups=8):
        self.he = he or HeSum(bits=BITS)
        self.d, self.round_id = d, os.urandom(m.ROUND_ID_BYTES)
        self.context_message = self.he.key_holder.open_round(self.round_id, groups=groups, d=d)
        self.aggregator = HeAggregator(self.he.parameters, round_id=self.round_id,
                                       context_message=self.context_message, key_holder=self.he.key_holder_public,
                                       directory=self.he.directory, d=d)

    def client(self, cid, *, round_id=None, group=0):
        return HeClient(cid, params=self.he.parameters, signing_key=self.he.identity(cid),
                        key_holder=self.he.key_holder_public, round_id=round_id or self.round_id, group=group,
                        group_size=4, bits=self.he.bits)

    def values(self, cid):
        if self.he.scheme == "ckks":
            return np.full(self.d, 0.25 * (cid + 1), np.float32)
        return np.arange(self.d, dtype=np.uint32) * np.uint32(cid + 1) % np.uint32(1 << BITS)

    def upload(self, cid, **kwargs):
        return self.client(cid, **kwargs).upload(self.context_message, self.values(cid))

    def uploads(self, group, clients):
        return {c: self.upload(c, group=group) for c in clients}

    def total(self, group, uploads):
        """The decrypted sum of a group's uploads, through the aggregator and the key holder."""
        request = self.aggregator.sum_group(group, uploads)
        return self.aggregator.open_result(group, self.he.key_holder.decrypt(request))


def fields(message):
    """(round_id, group, client, fingerprint, d, vector, signature) of an UPLOAD."""
    reader = Reader(wire.unframe(message, kind=m.UPLOAD))
    out = (reader.raw(16), reader.u32(), reader.u32(), reader.raw(32), reader.u32(), reader.blob(max_size=1 << 30),
           reader.blob(max_size=1 << 10))
    reader.done()
    return out


def rebuild(round_id, group, client, digest, d, vector, signature):
    return wire.frame(m.UPLOAD, Writer().raw(round_id).u32(group).u32(client).raw(digest).u32(d).blob(vector)
                      .blob(signature).payload())


def resigned(rnd, cid, vector, group=0):
    """What a malicious client with a valid key can send: any vector, properly signed."""
    return m.encode_upload(rnd.round_id, group, cid, rnd.aggregator.digest, rnd.d, vector, rnd.he.identity(cid))


# Correctness ----------------------------------------------------------------------------------

@pytest.mark.parametrize("groups, dropped", [
    ([[0, 1, 2, 3, 4, 5]], {}),
    ([[0, 3], [1, 2, 4, 5]], {1: "upload"}),
    ([[5, 1], [0, 2, 3, 4]], {2: "upload", 4: "upload"}),
])
def test_bfv_sums_equal_plaintext_modulo_2_bits(groups, dropped):
    ups, bits = quantized(6, group_size=max(map(len, groups)))
    dropouts = DropoutSchedule(dropped)
    result = HeSum().bind(bits=bits).run(ups, groups=groups, dropouts=dropouts)
    plain = Plaintext().run(ups, groups=groups, dropouts=dropouts)
    assert result.sums.dtype == np.uint32 and result.sums.shape == (len(groups), D)
    assert np.array_equal(ring.lift(result.sums, bits), ring.lift(plain.sums, bits))
    assert result.survivors == plain.survivors
    assert result.measurements["he/dropped"] == len(dropped)


def test_bfv_uint64_words():
    ups, bits = quantized(3, group_size=3, scale=2.0**30)
    assert bits > 32 and ups[0].values.dtype == np.uint64
    result = HeSum(bits=bits).run(ups, groups=[[0, 1, 2]])
    plain = Plaintext().run(ups, groups=[[0, 1, 2]])
    assert result.sums.dtype == np.uint64
    assert np.array_equal(ring.lift(result.sums, bits), ring.lift(plain.sums, bits))


def test_bfv_without_bits_sums_whole_words_exactly():
    rng = np.random.default_rng(3)
    ups = [Update(i, rng.integers(0, 2**32, D, dtype=np.uint64).astype(np.uint32)) for i in range(15)]
    groups = [list(range(15))]
    assert np.array_equal(HeSum().run(ups, groups=groups).sums, Plaintext().run(ups, groups=groups).sums)


def test_bfv_spans_many_ciphertexts_without_printing_tenseal_warning(capfd):
    ups, bits = quantized(2, d=3 * 8192 + 7, group_size=2)
    result = HeSum(bits=bits).run(ups, groups=[[0, 1]])
    assert np.array_equal(ring.lift(result.sums, bits), ring.lift(Plaintext().run(ups, groups=[[0, 1]]).sums, bits))
    assert "WARNING" not in capfd.readouterr().out


def test_ckks_sums_are_within_the_stated_tolerance_and_on_the_grid():
    ups, he = reals(10), HeSum("ckks")
    result = he.run(ups, groups=[list(range(10))])
    plain = Plaintext().run(ups, groups=[list(range(10))])
    error = np.abs(result.sums - plain.sums).max()
    assert result.sums.dtype == np.float64
    assert error <= he.params(10).tolerance  # 2^-21 + sqrt(10) 2^-25 = 5.7e-7
    scaled = result.sums * 2.0**20
    assert np.array_equal(scaled, np.round(scaled))  # rounded by the key holder before it left


def test_ckks_groups_and_dropouts():
    ups, he = reals(5), HeSum("ckks")
    dropouts = DropoutSchedule({3: "upload"})
    result = he.run(ups, groups=[[0, 3, 2], [1, 4]], dropouts=dropouts)
    plain = Plaintext().run(ups, groups=[[0, 3, 2], [1, 4]], dropouts=dropouts)
    assert result.survivors == ((0, 2), (1, 4))
    assert np.abs(result.sums - plain.sums).max() <= he.params(3).tolerance


def test_view_and_measurements():
    ups, bits = quantized(4, group_size=2)
    result = HeSum(bits=bits).run(ups, groups=[[0, 1, 2, 3]], dropouts=DropoutSchedule({2: "upload"}))
    meas = result.measurements
    assert result.view.protocol == "he" and set(result.view.received) == {0, 1, 3}
    assert all(len(msgs) == 1 for msgs in result.view.received.values())
    assert meas["he/bytes_up"] == result.view.total_bytes
    assert meas["he/bytes_down"] == 4 * meas["he/context_bytes"]  # every client gets the public context
    assert 16 * 3 * 8192 < meas["he/bytes_up"] < 17 * 3 * 8192  # one 8192-slot ciphertext each: 16 B per slot
    assert meas["he/dropped"] == 1
    for key in ("seconds", "encrypt_seconds", "sum_seconds", "key_holder_seconds", "keygen_seconds",
                "key_holder_verify_seconds", "key_holder_add_seconds", "key_holder_decrypt_seconds"):
        assert meas[f"he/{key}"] >= 0


def test_every_round_has_fresh_keys_and_the_key_holder_forgets_them():
    he, ups = HeSum(bits=BITS), quantized(2, group_size=2)[0]
    digests = set()
    for _ in range(2):
        he.run(ups, groups=[[0, 1]])
        digests.add(he.key_holder.digest)
        assert he.key_holder._context is None
    assert len(digests) == 2


def test_a_group_with_no_survivor_aborts():
    ups = quantized(4, group_size=2)[0]
    with pytest.raises(InsufficientParticipantsError):
        HeSum(bits=BITS).run(ups, groups=[[0, 1], [2, 3]], dropouts=DropoutSchedule({2: "upload", 3: "upload"}))


def test_unknown_dropout_stage_is_refused():
    with pytest.raises(ConfigurationError, match="upload"):
        HeSum(bits=BITS).run(quantized(2, group_size=2)[0], groups=[[0, 1]], dropouts=DropoutSchedule({1: "unmask"}))


def test_inputs_of_the_wrong_kind_are_refused():
    with pytest.raises(ConfigurationError, match="ring words"):
        HeSum().run(reals(2), groups=[[0, 1]])
    with pytest.raises(ConfigurationError, match="real values"):
        HeSum("ckks").run(quantized(2, group_size=2)[0], groups=[[0, 1]])
    with pytest.raises(ConfigurationError, match="uint64"):
        HeSum(bits=40).run(quantized(2, group_size=2)[0], groups=[[0, 1]])
    with pytest.raises(ConfigurationError, match="plain_modulus"):  # 16 x 2^31 >= t / 2
        HeSum().run([Update(i, np.zeros(4, np.uint32)) for i in range(16)], groups=[list(range(16))])
    huge = [Update(0, np.full(4, 2.0**17, np.float32)), Update(1, np.zeros(4, np.float32))]
    with pytest.raises(ConfigurationError, match="clip"):
        HeSum("ckks").run(huge, groups=[[0, 1]])
    nan = [Update(0, np.full(4, np.nan, np.float32)), Update(1, np.zeros(4, np.float32))]
    with pytest.raises(ConfigurationError, match="clip"):
        HeSum("ckks").run(nan, groups=[[0, 1]])
    with pytest.raises(ConfigurationError, match="groups of >= 2"):  # the key holder never decrypts one upload
        HeSum("ckks").run(nan[1:], groups=[[1]])
    with pytest.raises(InsufficientParticipantsError, match="min_contributors"):
        HeSum(bits=BITS).run(quantized(3, group_size=3)[0], groups=[[0, 1, 2]],
                             dropouts=DropoutSchedule({0: "upload", 1: "upload"}))


# Roles ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
def test_the_aggregator_holds_no_secret_key(scheme):
    rnd = Round(HeSum(scheme, bits=BITS) if scheme == "bfv" else HeSum(scheme))
    context = rnd.aggregator.context
    assert context.is_public() and not context.is_private() and not context.has_secret_key()
    vector = rnd.aggregator.accept(0, rnd.upload(0))
    with pytest.raises(ValueError, match="secret_key"):
        vector.decrypt()
    # and the key holder decrypts the sum it is sent
    assert rnd.total(0, {0: rnd.upload(0), 1: rnd.upload(1)}).shape == (D,)


def test_the_key_holder_decrypts_each_group_once_and_nothing_after_the_round():
    rnd = Round(groups=3)
    request = rnd.aggregator.sum_group(0, rnd.uploads(0, (0, 1)))
    rnd.he.key_holder.decrypt(request)
    with pytest.raises(ProtocolIntegrityError):
        rnd.he.key_holder.decrypt(request)  # a second decryption for group 0
    with pytest.raises(ProtocolIntegrityError):
        rnd.he.key_holder.decrypt(rnd.aggregator.sum_group(5, rnd.uploads(5, (2, 3))))  # no such group
    other = m.encode_sum(os.urandom(16), 1, rnd.aggregator.digest, D, list(rnd.uploads(1, (4, 5)).values()))
    with pytest.raises(ProtocolIntegrityError):
        rnd.he.key_holder.decrypt(other)  # another round
    rnd.he.key_holder.close_round()
    with pytest.raises(ProtocolIntegrityError):
        rnd.he.key_holder.decrypt(rnd.aggregator.sum_group(2, rnd.uploads(2, (6, 7))))


def test_clients_refuse_a_context_the_key_holder_did_not_sign():
    rnd = Round()
    # a curious aggregator swaps in a context of its own (it would then hold the secret key)
    own = new_context(rnd.he.parameters).serialize(save_secret_key=False)
    forged_key, _ = crypto.ed25519_keypair()
    forged = m.encode_context(rnd.round_id, own, forged_key)
    with pytest.raises(ProtocolIntegrityError):
        rnd.client(0).upload(forged, rnd.values(0))
    with pytest.raises(ProtocolIntegrityError):  # a context from another round
        rnd.client(0, round_id=os.urandom(16)).upload(rnd.context_message, rnd.values(0))


def test_a_context_carrying_the_secret_key_or_other_parameters_is_refused():
    rnd = Round()
    signing_key, rnd.he.key_holder_public = crypto.ed25519_keypair()  # a key holder that errs, signing both
    private = new_context(rnd.he.parameters).serialize(save_secret_key=True)
    with pytest.raises(ProtocolIntegrityError):
        rnd.client(0).upload(m.encode_context(rnd.round_id, private, signing_key), rnd.values(0))
    other = new_context(HeSum("ckks").parameters).serialize(save_secret_key=False)
    with pytest.raises(ProtocolIntegrityError):
        rnd.client(0).upload(m.encode_context(rnd.round_id, other, signing_key), rnd.values(0))


# Untrusted uploads ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rnd():
    return Round()


@pytest.fixture(scope="module")
def honest(rnd):
    return rnd.upload(0)


def test_an_honest_upload_is_accepted(rnd, honest):
    assert rnd.aggregator.accept(0, honest).size() == D


@pytest.mark.parametrize("mangle", [
    lambda msg: b"",
    lambda msg: msg[:7],
    lambda msg: msg[:-1],
    lambda msg: msg[: len(msg) // 2],
    lambda msg: msg + b"\0",
    lambda msg: fields(msg)[5],  # a bare TenSEAL vector, no envelope
    lambda msg: wire.frame(m.SUM, msg[8:]),  # another kind
    lambda msg: rebuild(*fields(msg)[:5], b"", fields(msg)[6]),  # an empty vector
    lambda msg: rebuild(*fields(msg)[:5], fields(msg)[5][: len(fields(msg)[5]) // 2], fields(msg)[6]),  # truncated
    lambda msg: rebuild(*fields(msg)[:5], fields(msg)[5] * 2, fields(msg)[6]),  # oversize
], ids=["empty", "header", "last-byte", "half", "trailing", "bare", "kind", "empty-vector", "short-vector", "oversize"])
def test_malformed_uploads_are_refused(rnd, honest, mangle):
    with pytest.raises(MalformedMessageError):
        rnd.aggregator.accept(0, mangle(honest))


def test_unsigned_or_wrongly_signed_uploads_are_refused(rnd, honest):
    round_id, group, client, digest, d, vector, signature = fields(honest)
    for bad in (b"", b"\0" * 64, signature[:-1] + bytes([signature[-1] ^ 1]),
                crypto.sign(rnd.he.identity(1), m.upload_statement(round_id, group, client, digest, d, vector))):
        with pytest.raises(ProtocolIntegrityError):
            rnd.aggregator.accept(0, rebuild(round_id, group, client, digest, d, vector, bad))


def test_uploads_bound_to_another_round_client_context_or_length_are_refused(rnd, honest):
    round_id, group, client, digest, d, vector, signature = fields(honest)
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.accept(1, honest)  # client 0's upload replayed as client 1's
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.accept(99, honest)  # nobody registered
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.accept(0, honest, group=1)  # counted in another group
    for changed in ((os.urandom(16), group, client, digest, d), (round_id, group, client, bytes(32), d),
                    (round_id, group, client, digest, d - 1), (round_id, 1, client, digest, d)):
        with pytest.raises(ProtocolIntegrityError):
            rnd.aggregator.accept(0, rebuild(*changed, vector, signature), group=changed[1])


def test_a_ciphertext_under_another_key_is_refused(rnd, honest):
    round_id, group, client, digest, d, _, signature = fields(honest)
    stranger = ts.bfv_vector(new_context(rnd.he.parameters), list(range(D))).serialize()
    with pytest.raises(ProtocolIntegrityError):  # swapped into an honest upload: the signature fails
        rnd.aggregator.accept(0, rebuild(round_id, group, client, digest, d, stranger, signature))
    # an honest client fooled into another context signs that context's fingerprint: refused too
    other = KeyHolder(rnd.he.parameters, signing_key=rnd.he.key_holder._signing_key, directory=rnd.he.directory)
    misled = rnd.client(0).upload(other.open_round(rnd.round_id, groups=1, d=D), rnd.values(0))
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.accept(0, misled)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_flips_in_the_ciphertext_fail_the_signature(rnd, honest, data):
    start = len(honest) - 4 - 64 - len(fields(honest)[5])  # the first byte of the vector
    position = data.draw(st.integers(start, len(honest) - 4 - 64 - 1))
    flip = data.draw(st.integers(1, 255))
    mutated = bytearray(honest)
    mutated[position] ^= flip
    with pytest.raises(ProtocolIntegrityError):
        rnd.aggregator.accept(0, bytes(mutated))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_byte_flips_anywhere_are_refused(rnd, honest, data):
    position = data.draw(st.integers(0, len(honest) - 1))
    mutated = bytearray(honest)
    mutated[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises((MalformedMessageError, ProtocolIntegrityError)):
        rnd.aggregator.accept(0, bytes(mutated))


def test_a_tampered_upload_aborts_the_round(monkeypatch):
    ups, bits = quantized(3, group_size=3)
    honest_upload = HeClient.upload

    def tampering(self, context_message, values):
        message = honest_upload(self, context_message, values)
        if self.client_id == 1:
            mutated = bytearray(message)
            mutated[len(message) // 2] ^= 0x10
            return bytes(mutated)
        return message

    monkeypatch.setattr(HeClient, "upload", tampering)
    with pytest.raises(ProtocolIntegrityError):
        HeSum(bits=bits).run(ups, groups=[[0, 1, 2]])


def test_signed_garbage_is_refused_before_tenseal_parses_it(rnd, honest):
    vector = fields(honest)[5]
    two_vectors = ts.bfv_vector(new_context(rnd.he.parameters), list(range(D // 2))).serialize()
    for bad in (os.urandom(len(vector)), two_vectors + two_vectors[:10], vector + b"\x19" + bytes(8)):
        with pytest.raises(MalformedMessageError):
            rnd.aggregator.accept(0, resigned(rnd, 0, bad))


# Malicious clients: HE does not validate inputs ------------------------------------------------

def test_a_malicious_client_can_spoil_the_sum_undetected():
    """A client with a valid key encrypts anything: the sum is wrong, and nothing points at the client."""
    rnd = Round()
    evil = ts.bfv_vector(load(rnd), [10**9] * D).serialize()  # far outside the ring of the round
    total = rnd.total(0, {0: rnd.upload(0), 1: resigned(rnd, 1, evil)})
    assert not np.array_equal(total, rnd.values(0).astype(np.int64) + ring.lift(rnd.values(1), BITS))


@pytest.mark.parametrize("scheme", ["bfv", "ckks"])
def test_a_mutated_ciphertext_resigned_by_its_client_is_refused_or_garbage(scheme):
    """Never a crash; either a refusal or a garbage sum (it cannot be attributed to the client)."""
    rnd = Round(HeSum(scheme, bits=BITS) if scheme == "bfv" else HeSum(scheme), groups=16)
    length, outcomes = len(fields(rnd.upload(1))[5]), []
    for group, position in enumerate(range(length // 3, length, length // 8)):
        honest, evil = 2 * group, 2 * group + 1  # every client counts in one sum per round
        expected = (sum(rnd.values(c).astype(np.float64) for c in (honest, evil)) if scheme == "ckks"
                    else sum(ring.lift(rnd.values(c), BITS) for c in (honest, evil)))
        mutated = bytearray(fields(rnd.upload(evil, group=group))[5])
        mutated[position % len(mutated)] ^= 0x01
        try:
            total = rnd.total(group, {honest: rnd.upload(honest, group=group),
                                      evil: resigned(rnd, evil, bytes(mutated), group)})
        except ProtocolError:
            outcomes.append("refused")
        else:
            outcomes.append("correct" if np.abs(total - expected).max() < 1e-3 else "garbage")
    assert "garbage" in outcomes


def load(rnd):
    public, _ = m.open_context(rnd.context_message, round_id=rnd.round_id, signer=rnd.he.key_holder_public)
    return ts.context_from(public)
