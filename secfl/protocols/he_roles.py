"""The three roles of the homomorphic secure sum, each holding only what it may hold.

``KeyHolder`` (the round's secret key), ``HeClient`` (its input and signing key) and ``HeAggregator``
(the public context only); ``HeSum`` in ``he.py`` drives a round between them. The threat model is
in ``he.py`` and protocols/he_sum/SPEC.md.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Mapping

import numpy as np
import tenseal as ts
import tenseal.sealapi as sealapi

from secfl.exceptions import (ConfigurationError, InsufficientParticipantsError, MalformedMessageError,
                              ProtocolIntegrityError)
from secfl.hazmat import ring
from secfl.protocols import he_messages as m
from secfl.protocols.directory import KeyDirectory
from secfl.protocols.he_params import HeParams, matches, new_context


class KeyHolder:
    """The only party that ever holds a secret key: one fresh TenSEAL context per round.

    Publishes the public context (no secret, relinearisation or Galois keys) signed with its
    long-term Ed25519 key; decrypts each group's sum at most once; forgets the key at ``close_round``.
    """

    def __init__(self, params: HeParams, *, signing_key: bytes, threads: int = 1) -> None:
        self.params, self.threads = params, threads
        self._signing_key = signing_key
        self._context: ts.Context | None = None
        self._pending: set[int] = set()
        self.round_id = self.digest = b""
        self.d = 0

    def open_round(self, round_id: bytes, *, groups: int, d: int) -> bytes:
        """New keys for the round; return the signed CONTEXT message (for the aggregator and clients)."""
        self._context = new_context(self.params, threads=self.threads)
        public = self._context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                         save_relin_keys=False)
        self.round_id, self.digest, self.d = round_id, m.fingerprint(public), d
        self._pending = set(range(groups))
        return m.encode_context(round_id, public, self._signing_key)

    def decrypt(self, message: bytes) -> bytes:
        """SUM message -> RESULT message: the group's exact (BFV) or grid-rounded (CKKS) sum.

        Raises:
            MalformedMessageError: a sum that does not parse as a vector of (params, d).
            ProtocolIntegrityError: no open round, another round or context, a group already
                decrypted (or unknown), or a BFV ciphertext with no noise budget left.
        """
        if self._context is None:
            raise ProtocolIntegrityError()
        group, _, blob = m.open_sum(message, params=self.params, round_id=self.round_id, digest=self.digest, d=self.d)
        if group not in self._pending:
            raise ProtocolIntegrityError()
        self._pending.discard(group)
        vector = parse_vector(self._context, blob, params=self.params, d=self.d)
        ciphertexts = vector.ciphertext()
        self._check_ciphertexts(ciphertexts)
        try:
            if self.params.scheme == "bfv":
                decryptor = sealapi.Decryptor(self._context.seal_context().data, self._context.secret_key().data)
                budgets = [decryptor.invariant_noise_budget(ct) for ct in ciphertexts]
            decrypted = vector.decrypt()
        except Exception:  # noqa: BLE001 - whatever SEAL refuses in a sum is a malformed sum
            raise MalformedMessageError("the encrypted sum does not decrypt") from None
        if self.params.scheme == "bfv":
            if min(budgets) <= 0:  # the noise overflowed: the decryption would be wrong
                raise ProtocolIntegrityError()
            values = np.asarray(decrypted, dtype=np.int64)
        else:
            grid = self.params.grid_bits
            values = np.ldexp(np.round(np.ldexp(np.asarray(decrypted, dtype=np.float64), grid)), -grid)
            if not np.all(np.isfinite(values)):
                raise ProtocolIntegrityError()
        return m.encode_result(self.round_id, group, values)

    def _check_ciphertexts(self, ciphertexts: list) -> None:
        """Every ciphertext of a sum: 2 polynomials at the data level, in the scheme's form and scale."""
        first = self._context.seal_context().data.first_parms_id()
        ckks = self.params.scheme == "ckks"
        for ct in ciphertexts:
            if (ct.size() != 2 or ct.is_ntt_form() != ckks or ct.parms_id() != first
                    or (ckks and ct.scale != self.params.scale)):
                raise MalformedMessageError("the encrypted sum is not a fresh-level ciphertext of the round")

    def close_round(self) -> None:
        """Forget the round's secret key."""
        self._context, self._pending = None, set()


class HeClient:
    """One client: checks the key holder's context, encrypts its vector as one TenSEAL vector, signs it."""

    def __init__(self, client_id: int, *, params: HeParams, signing_key: bytes, key_holder: bytes, round_id: bytes,
                 group_size: int, bits: int | None, threads: int = 1) -> None:
        self.client_id, self.params, self.round_id = client_id, params, round_id
        self.group_size, self.bits, self.threads = group_size, bits, threads
        self._signing_key, self._key_holder = signing_key, key_holder

    def upload(self, context_message: bytes, values: np.ndarray) -> bytes:
        """The signed UPLOAD of ``values`` (ring words for BFV, reals for CKKS).

        Raises:
            ProtocolIntegrityError: a context not signed by the key holder, for another round, with
                other parameters or carrying a secret key.
            MalformedMessageError: a context TenSEAL cannot parse.
            ConfigurationError: CKKS values that are not finite or too large for the parameters.
        """
        public, digest = m.open_context(context_message, round_id=self.round_id, signer=self._key_holder)
        context = load_public(public, self.params, threads=self.threads)
        plain = self._encode(values)
        encrypt = ts.bfv_vector if self.params.scheme == "bfv" else ts.ckks_vector
        with quiet_stdout(values.size > self.params.slots):  # TenSEAL warns that chunked vectors cannot matmul
            blob = encrypt(context, plain).serialize()
        return m.encode_upload(self.round_id, self.client_id, digest, values.size, blob, self._signing_key)

    def _encode(self, values: np.ndarray) -> list:
        if self.params.scheme == "bfv":
            return ring.lift(values, self.bits).tolist()  # centred representatives of v mod 2^bits
        reals = values.astype(np.float64)
        cap = self.params.ckks_max_abs_sum() / self.group_size
        peak = float(np.max(np.abs(reals)))
        if not peak < cap:  # also catches NaN
            raise ConfigurationError(
                f"HeSum(ckks): client {self.client_id} has |x| up to {peak:g}, above {cap:g} (the parameters' "
                f"capacity {self.params.ckks_max_abs_sum():g} / group size {self.group_size}); clip the updates "
                "(L2Clip) or widen the data prime relative to scale_bits")
        return reals.tolist()


class HeAggregator:
    """The server: holds the public context only; verifies uploads and adds them per group."""

    def __init__(self, params: HeParams, *, round_id: bytes, context_message: bytes, key_holder: bytes,
                 directory: KeyDirectory, d: int, threads: int = 1) -> None:
        self.params, self.round_id, self.directory, self.d = params, round_id, directory, d
        public, self.digest = m.open_context(context_message, round_id=round_id, signer=key_holder)
        self.context = load_public(public, params, threads=threads)

    def accept(self, client: int, message: bytes) -> ts.BFVVector | ts.CKKSVector:
        """One client's UPLOAD, fully checked (signature, size and layout first), parsed.

        Raises:
            MalformedMessageError: bad framing, size or layout, or TenSEAL cannot parse it.
            ProtocolIntegrityError: unknown client, other round / context / length, missing or bad signature.
        """
        blob = m.open_upload(message, params=self.params, round_id=self.round_id, client=client, digest=self.digest,
                             d=self.d, public_key=self.directory.public_key(client))
        return parse_vector(self.context, blob, params=self.params, d=self.d)

    def add_group(self, group: int, uploads: Mapping[int, bytes]) -> ts.BFVVector | ts.CKKSVector:
        """The encrypted sum of the uploads of one group's surviving clients (each checked by ``accept``)."""
        total = None
        for client, message in uploads.items():
            vector = self.accept(client, message)
            try:
                total = vector if total is None else total.add_(vector)
            except Exception:  # noqa: BLE001 - TenSEAL refuses mismatched vectors with assorted errors
                raise MalformedMessageError("encrypted vectors that cannot be added") from None
        if total is None:
            raise InsufficientParticipantsError(f"every client of group {group} dropped out")
        return total

    def request(self, group: int, total: ts.BFVVector | ts.CKKSVector, contributors: int) -> bytes:
        """The SUM message that asks the key holder to decrypt ``group``'s encrypted sum."""
        return m.encode_sum(self.round_id, group, self.digest, self.d, contributors, total.serialize())

    def sum_group(self, group: int, uploads: Mapping[int, bytes]) -> bytes:
        """``add_group`` then ``request``: the SUM message of one group."""
        return self.request(group, self.add_group(group, uploads), len(uploads))

    def open_result(self, group: int, message: bytes) -> np.ndarray:
        """The key holder's RESULT for ``group``: int64 (BFV) or float64 (CKKS) sums."""
        return m.open_result(message, round_id=self.round_id, group=group, d=self.d, scheme=self.params.scheme)


def load_public(data: bytes, params: HeParams, *, threads: int = 1) -> ts.Context:
    """A public context from (signature-checked) bytes; refuses one with a secret key or other parameters.

    Raises:
        MalformedMessageError: TenSEAL cannot parse it.
        ProtocolIntegrityError: it holds a secret key, or its parameters are not ``params``.
    """
    try:
        context = ts.context_from(data, n_threads=threads)
    except Exception:  # noqa: BLE001 - untrusted bytes: every parse failure is the same refusal
        raise MalformedMessageError("the public context does not parse") from None
    if context.is_private() or context.has_secret_key() or not context.has_public_key() or not matches(context, params):
        raise ProtocolIntegrityError()
    return context


def parse_vector(context: ts.Context, blob: bytes, *, params: HeParams, d: int) -> ts.BFVVector | ts.CKKSVector:
    """TenSEAL's parse of a checked vector blob; anything it refuses, or a length other than d, is malformed."""
    load = ts.bfv_vector_from if params.scheme == "bfv" else ts.ckks_vector_from
    try:
        vector = load(context, blob)
        size = vector.size()
    except Exception:  # noqa: BLE001 - untrusted bytes: every parse failure is the same refusal
        raise MalformedMessageError("the encrypted vector does not parse") from None
    if size != d:
        raise MalformedMessageError(f"encrypted vector of {size} values, expected {d}")
    return vector


@contextlib.contextmanager
def quiet_stdout(active: bool = True) -> Iterator[None]:
    """Drop what TenSEAL prints while the block runs (its "does not fit in a single ciphertext" warning).

    TenSEAL's bindings redirect C++ ``std::cout`` to Python's ``sys.stdout``, so swapping
    ``sys.stdout`` is enough; it is process-wide for the duration of the block, like any
    ``contextlib.redirect_stdout``.
    """
    if not active:
        yield
        return
    with contextlib.redirect_stdout(io.StringIO()):
        yield
