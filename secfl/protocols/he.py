"""HeSum: secure sum by additively homomorphic encryption (TenSEAL BFV or CKKS), simulated in-process.

Threat model (see protocols/he_sum/SPEC.md):

- Three roles. A **key holder** makes a fresh TenSEAL key pair every round, keeps the secret key
  and publishes only the signed public context. **Clients** encrypt their whole vector under it and
  sign the ciphertext with their long-term Ed25519 key (registered in a ``KeyDirectory``). The
  **aggregator** holds the public context only: it checks the uploads and forwards each group's
  to the key holder, which adds them and decrypts that sum, and nothing else.
- The aggregator never holds the secret key: it learns, per group, the sum over the clients that
  uploaded, who uploaded, and message sizes. The key holder is a separate party that does not
  collude with the aggregator and follows the protocol: it receives each group's uploads (to check
  and add them itself), so it must not decrypt them one by one. **If the key holder and the
  aggregator collude, they decrypt every individual update.** One secret key per round (SEAL has
  no threshold decryption), so the key holder is a single point of trust.
- The key holder does not trust the aggregator for what it decrypts, even a *malicious* one that
  controls every message the key holder receives: the aggregator forwards the group's signed
  uploads, and the key holder verifies each client's signature over (round, group, client, context,
  ciphertext digest), requires at least ``min_contributors`` distinct registered clients, none
  already counted in another group's sum of the round, adds the ciphertexts itself and decrypts that
  sum, once per group. So no single upload, nor a sum over fewer than ``min_contributors`` clients,
  nor one client's upload twice, is ever decrypted. It cannot stop the aggregator from leaving
  clients out (as dropouts) down to ``min_contributors``.
- Uploads (untrusted bytes from registered clients, SEAL 4.3 parses them) are parsed and added in a
  worker process with memory and CPU limits and a timeout (``isolate=True``; ``he_sandbox``).
- Clients are trusted for their inputs: HE gives no input validation. A malicious client can
  encrypt anything (or re-sign a mutated ciphertext); the sum is then garbage, and it cannot be
  attributed. Outsiders cannot: every upload is signed over (round, group, client, context
  fingerprint, d, ciphertext) and checked, with its size and layout, before TenSEAL parses a byte.
- CKKS decryption returns m + e with a key-dependent e, so exact decrypted sums would leak the
  secret key (Li-Micciancio, EUROCRYPT 2021) to whoever sees them and every individual update with
  it. Mitigations applied: fresh keys every round, and the key holder rounds each decrypted sum to a
  grid of 2^-grid_bits (>= 2^20 scale steps) before it leaves (heuristic: noise that straddles a
  grid boundary still leaks a little). BFV is exact and leaks nothing beyond the sum; the key holder
  also checks every ciphertext's noise budget, so a decryption failure raises instead of returning
  a wrong sum.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, InsufficientParticipantsError
from secfl.hazmat import crypto
from secfl.protocols import he_messages as m
from secfl.protocols.directory import Identities, KeyDirectory
from secfl.protocols.he_params import DEFAULT_PLAIN_MODULUS, HeGroupParams, HeParams
from secfl.protocols.rounds import check_round
from secfl.types import NO_DROPOUTS, BaseSecureSum, DropoutSchedule, RoundResult, ServerView, Update

MAX_ID = 2**32 - 1
STAGES = ("upload",)


class HeSum(BaseSecureSum):
    """Secure sum by homomorphic encryption: a separate key holder decrypts group sums only.

    Args:
        scheme: ``"bfv"`` (exact; ring words from Quantize) or ``"ckks"`` (approximate; float32 reals).
        poly_modulus_degree: N (1024..32768); coeff_mod_bit_sizes: the primes of q, the last being the
            special prime; together within the 128-bit bound of the HE standard.
        plain_modulus: BFV's t, a prime = 1 mod 2N (ignored for CKKS).
        scale_bits: CKKS's log2 scale, below the data prime (ignored for BFV).
        grid_bits: CKKS: decrypted sums are rounded to multiples of 2^-grid_bits (ignored for BFV).
        bits: BFV: inputs are words holding v mod 2^bits (default: the word size); see ``bind``.
        threads: TenSEAL threads for every context.
        min_contributors: the fewest uploads a group sum may hold (>= 2); a group with fewer after
            dropouts fails the round, and the pipeline refuses groupings with smaller groups. The key
            holder enforces it itself on the signed uploads it is sent.
        isolate: the key holder parses and adds the uploads in a worker process with memory, CPU and
            time limits (default); False parses them in-process, beside the secret key.

    Guarantee: against an aggregator that does not collude with the key holder (honest-but-curious,
    or malicious towards the key holder), the aggregator learns per group only the sum over at least
    ``min_contributors`` clients that uploaded, each client in one sum per round; outsiders cannot
    inject or alter uploads. BFV: ``sums[g]`` equals Plaintext's sum modulo 2^bits (Plaintext sums
    the words mod 2^32 / 2^64, the ring stage uses them mod 2^bits only) and is returned as words of
    the input dtype holding S mod 2^32 / 2^64 of the exact integer sum S of the centred inputs.
    CKKS: float64 sums within ``params(n).tolerance`` of the exact sum of the float32 inputs
    (2^-(grid_bits+1) + sqrt(n) 2^(15-scale_bits); 5.7e-7 at n = 10 with the defaults).
    Raises ``InsufficientParticipantsError`` if fewer than ``min_contributors`` of a group upload, and aborts the
    round (``MalformedMessageError`` / ``ProtocolIntegrityError``) on any bad message.

    References: Fan and Vercauteren, Somewhat Practical Fully Homomorphic Encryption, 2012 (BFV);
        Cheon, Kim, Kim and Song, Homomorphic Encryption for Arithmetic of Approximate Numbers,
        ASIACRYPT 2017 (CKKS); Li and Micciancio, EUROCRYPT 2021; Benaissa et al., TenSEAL, 2021.
    """

    name: ClassVar[str] = "he"
    stages: ClassVar[tuple[str, ...]] = STAGES
    input_stage: ClassVar[str] = "upload"
    input_kind: str  # "ring" (BFV) or "real" (CKKS)
    secure: ClassVar[bool] = True
    accepts_packed: ClassVar[bool] = False  # each group sum must fit the ring stage's bits

    def __init__(self, scheme: str = "bfv", *, poly_modulus_degree: int = 8192,
                 coeff_mod_bit_sizes: Sequence[int] = (60, 40), plain_modulus: int = DEFAULT_PLAIN_MODULUS,
                 scale_bits: int = 40, grid_bits: int = 20, bits: int | None = None, threads: int = 1,
                 min_contributors: int = 2, isolate: bool = True) -> None:
        bfv = scheme == "bfv"
        self.parameters = HeParams(scheme, poly_modulus_degree, coeff_mod_bit_sizes,
                                   plain_modulus=plain_modulus if bfv else None,
                                   scale_bits=None if bfv else scale_bits, grid_bits=None if bfv else grid_bits)
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigurationError(f"HeSum(threads={threads!r}) must be an int >= 1")
        self.scheme, self.threads = scheme, threads
        if not isinstance(min_contributors, int) or isinstance(min_contributors, bool) or min_contributors < 2:
            raise ConfigurationError(f"HeSum(min_contributors={min_contributors!r}) must be an int >= 2: the key "
                                     "holder must never decrypt a single client's upload")
        self.min_group_size = self.min_contributors = min_contributors
        self.input_kind = "ring" if bfv else "real"
        self.bits = self._check_bits(bits)
        self.sum_fits = False  # True once bound to a ring stage: group sums fit in `bits` bits
        self.directory = KeyDirectory()
        self._identities = Identities(self.directory)
        from secfl.protocols.he_roles import KeyHolder  # TenSEAL loads when an HeSum is made, not with secfl

        key_holder_private, self.key_holder_public = crypto.ed25519_keypair()
        self.key_holder = KeyHolder(self.parameters, signing_key=key_holder_private, directory=self.directory,
                                    min_contributors=min_contributors, threads=threads, isolate=isolate)

    def _check_bits(self, bits: int | None) -> int | None:
        if bits is None:
            return None
        if self.scheme != "bfv":
            raise ConfigurationError("HeSum(scheme='ckks') sums real values: bits applies to BFV only; drop Quantize")
        if not isinstance(bits, int) or isinstance(bits, bool) or not (1 <= bits <= 62 or bits == 64):
            raise ConfigurationError(f"HeSum(bits={bits!r}) must be an int in 1..62 or 64 (the Quantize stage's bits)")
        return bits

    def bind(self, *, bits: int | None = None) -> HeSum:
        """A new HeSum summing the words of a ring stage of ``bits`` bits (the pipeline passes them);
        ``self`` unchanged (itself for ``bits=None``: real values, or words of the default width).

        The ring stage sizes Z_2^bits so that a group's sum never wraps (``Quantize``): each lifted
        value and the exact integer sum then lie in [-2^(bits-1), 2^(bits-1)), so BFV only needs
        2^bits <= t - 1, whatever the group size (up to the noise budget).

        Raises:
            ConfigurationError: ``bits`` with CKKS, or not an int in 1..62 or 64.
        """
        if bits is None:
            return self
        configured = copy.copy(self)
        configured.bits = self._check_bits(bits)
        configured.sum_fits = True
        return configured

    def for_ring(self, bits: int) -> HeSum:
        """``bind(bits=bits)`` (the former name)."""
        return self.bind(bits=bits)

    def check_group_size(self, size: int) -> None:
        """Raise if a group of ``size`` is below ``min_contributors`` or does not fit the parameters."""
        super().check_group_size(size)
        self.params(size)

    def params(self, group_size: int, *, bits: int | None = None) -> HeGroupParams:
        """What the parameters guarantee for a group of ``group_size``; refuses groups that do not fit.

        BFV with ``bits`` (default: ``self.bits``, else 32): needs group_size 2^(bits-1) < t/2 and a
        noise budget for group_size additions.

        Raises:
            ConfigurationError: a group too large for the plain modulus or the noise budget.
        """
        if not isinstance(group_size, (int, np.integer)) or isinstance(group_size, bool) or group_size < 1:
            raise ConfigurationError(f"HeSum.params(group_size={group_size!r}) must be an int >= 1")
        p = self.parameters
        if self.scheme == "ckks":
            return HeGroupParams(p, group_size, None, None, p.ckks_max_abs_sum() / group_size,
                                 p.ckks_tolerance(group_size))
        bits = bits or self.bits or 32
        if self.sum_fits:
            if (1 << bits) > p.plain_modulus - 1:
                raise ConfigurationError(
                    f"HeSum(bfv): the ring stage needs {bits} bits for a group's sum but the plain modulus holds "
                    f"{(p.plain_modulus - 1).bit_length() - 1}; lower the Quantize scale or the clip norm, or use "
                    "smaller groups")
            capacity = p.bfv_noise_max_group()
            if group_size > capacity:
                raise ConfigurationError(f"HeSum(bfv): at most {capacity} clients per group fit the noise budget")
            return HeGroupParams(p, group_size, bits, capacity, None, 0.0)
        capacity = p.bfv_max_group(bits)
        if group_size > capacity:
            plain = (p.plain_modulus - 1) >> bits
            raise ConfigurationError(
                f"HeSum(bfv): a group of {group_size} clients summing {bits}-bit ring values needs group size x "
                f"2^{bits - 1} < plain_modulus / 2 = {p.plain_modulus / 2:.6g} (at most {plain} clients) and a noise "
                f"budget for the additions (at most {p.bfv_noise_max_group()} clients); at most {capacity} fit. "
                f"Use smaller "
                f"groups (grouping buckets), fewer Quantize bits (lower its scale or the clip norm), or a larger "
                f"plain_modulus (a prime = 1 mod {2 * p.poly_modulus_degree})")
        return HeGroupParams(p, group_size, bits, capacity, None, 0.0)

    def identity(self, client: int) -> bytes:
        """This simulation's long-term signing key of ``client`` (made and registered on first use)."""
        return self._identities.signing_key(client)

    def run(self, updates: Sequence[Update], *, groups: Sequence[Sequence[int]],
            dropouts: DropoutSchedule = NO_DROPOUTS) -> RoundResult:
        """One round: fresh keys, every surviving client uploads, one decrypted sum per group.

        Raises:
            ConfigurationError: inputs of the wrong kind or size for the scheme, groups too large.
            InsufficientParticipantsError: fewer than ``min_contributors`` of some group uploaded.
            MalformedMessageError, ProtocolIntegrityError: a message failed a check; no result.
        """
        start = time.perf_counter()
        by_id = check_round(updates, groups)
        dropouts.check(self.stages)
        template = next(iter(by_id.values())).values
        bits = self._check_inputs(template, max(by_id))
        for group in groups:
            if len(group) < self.min_contributors:
                raise ConfigurationError(f"HeSum needs groups of >= {self.min_contributors} clients (min_contributors), "
                                         f"got one of {len(group)}; use larger buckets or one_group")
            self.params(len(group), bits=bits)
        silent = dropouts.dropped_by("upload", self.stages)
        alive = [[c for c in group if c not in silent] for group in groups]
        for index, members in enumerate(alive):
            if len(members) < self.min_contributors:  # a "sum" of one upload is that client's input
                raise InsufficientParticipantsError(
                    f"group {index} has {len(members)} upload(s), fewer than min_contributors = {self.min_contributors}")
        d, round_id = template.size, os.urandom(m.ROUND_ID_BYTES)
        clock = dict.fromkeys(("keygen", "encrypt", "sum", "key_holder"), 0.0)
        tick = time.perf_counter()
        context_message = self.key_holder.open_round(round_id, groups=len(groups), d=d,
                                                     max_group=max(map(len, groups)))
        clock["keygen"] = time.perf_counter() - tick
        received: dict[int, tuple[bytes, ...]] = {}
        totals, to_key_holder = [], len(context_message)
        from secfl.protocols.he_roles import HeAggregator, HeClient  # TenSEAL: loaded by HeSum(...) already

        try:
            aggregator = HeAggregator(self.parameters, round_id=round_id, context_message=context_message,
                                      key_holder=self.key_holder_public, directory=self.directory, d=d,
                                      threads=self.threads)
            for index, members in enumerate(alive):
                uploads = {}
                for cid in members:
                    client = HeClient(cid, params=self.parameters, signing_key=self.identity(cid),
                                      key_holder=self.key_holder_public, round_id=round_id, group=index,
                                      group_size=len(groups[index]), bits=bits, threads=self.threads)
                    uploads[cid] = _timed(clock, "encrypt", client.upload, context_message, by_id[cid].values)
                received.update({cid: (message,) for cid, message in uploads.items()})
                request = _timed(clock, "sum", aggregator.sum_group, index, uploads)
                reply = _timed(clock, "key_holder", self.key_holder.decrypt, request)
                to_key_holder += len(request) + len(reply)
                totals.append(aggregator.open_result(index, reply))
        finally:
            self.key_holder.close_round()
        if self.scheme == "bfv":  # S mod 2^64, then mod 2^32 for uint32 words (numpy's cast truncates)
            sums = np.stack([t.view(np.uint64).astype(template.dtype) for t in totals])
        else:
            sums = np.stack(totals)
        view = ServerView(protocol=self.name, received=received)
        measurements = {
            "he/bytes_up": float(view.total_bytes),
            "he/bytes_down": float(len(context_message) * len(by_id)),
            "he/bytes_key_holder": float(to_key_holder),
            "he/context_bytes": float(len(context_message)),
            "he/dropped": float(len(by_id) - len(received)),
            **{f"he/{key}_seconds": value for key, value in clock.items()},
            **{f"he/key_holder_{key}_seconds": value for key, value in self.key_holder.clock.items()},
            "he/seconds": time.perf_counter() - start,
        }
        return RoundResult(sums, tuple(tuple(a) for a in alive), view, measurements)

    def _check_inputs(self, template: np.ndarray, largest_id: int) -> int | None:
        """The ring bits for BFV (None for CKKS) after checking the inputs suit the scheme."""
        if template.size == 0 or template.size > MAX_ID:
            raise ConfigurationError(f"HeSum needs vectors of 1..{MAX_ID} values, got {template.size}")
        if largest_id > MAX_ID:
            raise ConfigurationError(f"HeSum: client ids must be <= {MAX_ID}")
        if self.scheme == "ckks":
            if template.dtype.kind != "f":
                raise ConfigurationError(f"HeSum(scheme='ckks') sums real values, got {template.dtype}; drop Quantize "
                                         "or use scheme='bfv'")
            return None
        if template.dtype not in (np.uint32, np.uint64):
            raise ConfigurationError(f"HeSum(scheme='bfv') sums ring words, got {template.dtype}; put Quantize last in "
                                     "the stages, or use scheme='ckks' for real values")
        word = 8 * template.dtype.itemsize
        bits = self.bits or word
        if bits > word:
            raise ConfigurationError(f"HeSum(bits={bits}) does not fit {template.dtype} words; use uint64 words")
        return bits

    def __repr__(self) -> str:
        p = self.parameters
        extra = f"plain_modulus={p.plain_modulus}, bits={self.bits}" if self.scheme == "bfv" else (
            f"scale_bits={p.scale_bits}, grid_bits={p.grid_bits}")
        return (f"HeSum({self.scheme!r}, poly_modulus_degree={p.poly_modulus_degree}, "
                f"coeff_mod_bit_sizes={list(p.coeff_mod_bit_sizes)}, {extra})")


def _timed(clock: dict[str, float], key: str, step, *args):
    """``step(*args)``, adding its duration to ``clock[key]``."""
    tick = time.perf_counter()
    try:
        return step(*args)
    finally:
        clock[key] += time.perf_counter() - tick
