"""The three roles of the homomorphic secure sum, each holding only what it may hold.

``KeyHolder`` (the round's secret key), ``HeClient`` (its input and signing key) and ``HeAggregator``
(the public context only); ``HeSum`` in ``he.py`` drives a round between them. The threat model is
in ``he.py`` and protocols/he_sum/SPEC.md. Here: the aggregator controls every byte the key holder
receives, so the key holder decrypts only a sum it computed itself from at least ``min_contributors``
distinct uploads signed by registered clients for this round and group, each client counting once
per round; uploads are parsed in a limited worker process (``he_sandbox``), not beside the secret key.
"""

from __future__ import annotations

import contextlib
import io
import time
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
from secfl.protocols.he_sandbox import parse_vector, sum_isolated, sum_vectors

MAX_GROUP = 1 << 15  # the most uploads one SUM may carry (the BFV noise capacity of the default set)


class KeyHolder:
    """The only party that ever holds a secret key: one fresh TenSEAL context per round.

    Publishes the public context (no secret, relinearisation or Galois keys) signed with its
    long-term Ed25519 key. It never takes the aggregator's word for a sum: a SUM carries the group's
    signed UPLOADs, and the key holder checks each (the client's signature over round, group,
    client, context and ciphertext digest; the directory pins the keys), requires at least
    ``min_contributors`` distinct clients none of whom already counted this round, adds the
    ciphertexts itself (in a limited worker process when ``isolate``) and decrypts that sum, at most
    once per group. It forgets the key at ``close_round``.
    """

    def __init__(self, params: HeParams, *, signing_key: bytes, directory: KeyDirectory, min_contributors: int = 2,
                 threads: int = 1, isolate: bool = True) -> None:
        self.params, self.threads, self.directory = params, threads, directory
        self.min_contributors, self.isolate = min_contributors, isolate
        self._signing_key = signing_key
        self._context: ts.Context | None = None
        self._pending: set[int] = set()
        self._counted: set[int] = set()
        self.round_id = self.digest = self._public = b""
        self.d, self.max_group = 0, MAX_GROUP
        self.clock = dict.fromkeys(("verify", "add", "decrypt"), 0.0)

    def open_round(self, round_id: bytes, *, groups: int, d: int, max_group: int = MAX_GROUP) -> bytes:
        """New keys for the round; return the signed CONTEXT message (for the aggregator and clients)."""
        self._context = new_context(self.params, threads=self.threads)
        self._public = self._context.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False,
                                               save_relin_keys=False)
        self.round_id, self.digest, self.d, self.max_group = round_id, m.fingerprint(self._public), d, max_group
        self._pending, self._counted = set(range(groups)), set()
        self.clock = dict.fromkeys(self.clock, 0.0)
        return m.encode_context(round_id, self._public, self._signing_key)

    def decrypt(self, message: bytes) -> bytes:
        """SUM message -> RESULT message: the exact (BFV) or grid-rounded (CKKS) sum of the signed uploads it carries.

        Raises:
            MalformedMessageError: a SUM or upload that does not parse as (params, d).
            ProtocolIntegrityError: no open round; another round or context; a group already
                decrypted (or unknown); an upload of another round or group, unsigned, badly signed or
                from an unknown client; a client twice, or already counted in another group's sum;
                fewer than ``min_contributors`` clients; a BFV ciphertext with no noise budget left.
        """
        if self._context is None:
            raise ProtocolIntegrityError()
        tick = time.perf_counter()
        group, uploads = m.open_sum(message, params=self.params, round_id=self.round_id, digest=self.digest,
                                    d=self.d, max_uploads=self.max_group)
        if group not in self._pending:
            raise ProtocolIntegrityError()
        self._pending.discard(group)  # one attempt per group: any failure below aborts the round
        blobs: dict[int, bytes] = {}
        for upload in uploads:
            client, blob = m.open_upload(upload, params=self.params, round_id=self.round_id, group=group,
                                         digest=self.digest, d=self.d, public_key=self.directory.public_key)
            if client in blobs or client in self._counted:
                raise ProtocolIntegrityError()
            blobs[client] = blob
        if len(blobs) < self.min_contributors:
            raise ProtocolIntegrityError()
        self._counted.update(blobs)
        tock = time.perf_counter()
        vector = self._add(list(blobs.values()))
        self.clock["verify"] += tock - tick
        self.clock["add"] += time.perf_counter() - tock
        tick = time.perf_counter()
        try:
            return m.encode_result(self.round_id, group, self._decrypt(vector))
        finally:
            self.clock["decrypt"] += time.perf_counter() - tick

    def _add(self, blobs: list[bytes]) -> ts.BFVVector | ts.CKKSVector:
        """The homomorphic sum of checked upload blobs, as a vector of this round's private context."""
        scheme = self.params.scheme
        if not self.isolate:
            return sum_vectors(self._context, blobs, scheme=scheme, d=self.d)
        total = sum_isolated(self._public, blobs, scheme=scheme, d=self.d, threads=self.threads)
        m.check_layout(total, params=self.params, d=self.d)
        return parse_vector(self._context, total, scheme=scheme, d=self.d)

    def _decrypt(self, vector: ts.BFVVector | ts.CKKSVector) -> np.ndarray:
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
            return np.asarray(decrypted, dtype=np.int64)
        grid = self.params.grid_bits
        values = np.ldexp(np.round(np.ldexp(np.asarray(decrypted, dtype=np.float64), grid)), -grid)
        if not np.all(np.isfinite(values)):
            raise ProtocolIntegrityError()
        return values

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
        self._context, self._pending, self._counted = None, set(), set()


class HeClient:
    """One client: checks the key holder's context, encrypts its vector as one TenSEAL vector, signs it for its group."""

    def __init__(self, client_id: int, *, params: HeParams, signing_key: bytes, key_holder: bytes, round_id: bytes,
                 group: int, group_size: int, bits: int | None, threads: int = 1) -> None:
        self.client_id, self.params, self.round_id, self.group = client_id, params, round_id, group
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
        return m.encode_upload(self.round_id, self.group, self.client_id, digest, values.size, blob, self._signing_key)

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

    def check(self, client: int, message: bytes, *, group: int) -> bytes:
        """One client's UPLOAD for ``group``, fully checked (frame, binding, size, signature, layout); its vector bytes.

        The aggregator does not parse uploads: the key holder adds them (see ``KeyHolder.decrypt``).

        Raises:
            MalformedMessageError: bad framing, size or layout.
            ProtocolIntegrityError: unknown client, other round / group / context / length, missing or bad signature.
        """
        return m.open_upload(message, params=self.params, round_id=self.round_id, group=group, digest=self.digest,
                             d=self.d, public_key=self.directory.public_key, client=client)[1]

    def accept(self, client: int, message: bytes, *, group: int = 0) -> ts.BFVVector | ts.CKKSVector:
        """``check``, then TenSEAL's parse in this process (for inspection; a round does not call it)."""
        return parse_vector(self.context, self.check(client, message, group=group), scheme=self.params.scheme,
                            d=self.d)

    def sum_group(self, group: int, uploads: Mapping[int, bytes]) -> bytes:
        """The SUM message asking the key holder for ``group``'s sum: the checked uploads, forwarded as they are.

        Raises:
            InsufficientParticipantsError: no upload.
            MalformedMessageError, ProtocolIntegrityError: an upload fails ``check``.
        """
        if not uploads:
            raise InsufficientParticipantsError(f"every client of group {group} dropped out")
        for client, message in uploads.items():
            self.check(client, message, group=group)
        return m.encode_sum(self.round_id, group, self.digest, self.d, list(uploads.values()))

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
