"""Parameter sets of the homomorphic secure sum (``HeSum``): checks, capacity and expected sizes.

Every set is checked at construction: the 128-bit classical bound of the HE standard on log q, a
chain TenSEAL can use, a batching-friendly BFV plain modulus, a CKKS scale and rounding grid that
leave headroom. A throw-away probe context then confirms that TenSEAL accepts the set and, for BFV,
measures the noise budget of a fresh ciphertext, from which the number of additions that still
decrypt exactly follows. Nothing here holds a key that is used for data.

References: Albrecht et al., Homomorphic Encryption Security Standard v1.1 (2018), Table 1 (ternary
    secrets, 128-bit classical); Microsoft SEAL ``hestdparms.h``; Li and Micciancio, On the Security
    of Homomorphic Encryption on Approximate Numbers, EUROCRYPT 2021.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from secfl.exceptions import ConfigurationError

if TYPE_CHECKING:
    import tenseal as ts

SCHEMES = ("bfv", "ckks")
# Max log2 q (the whole chain, special prime included) for 128-bit classical security, ternary secret.
MAX_LOG_Q_128 = {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881}
DEFAULT_PLAIN_MODULUS = 68719230977  # 36-bit prime = 1 mod 16384 (2N for N = 8192): batching works
MAX_PRIME_BITS = 60  # SEAL's limit on one prime of the chain and on the plain modulus
MIN_GRID_GAP_BITS = 20  # CKKS: the rounding grid is >= 2^20 scale steps, ~2^5 x the noise at n = 10
CKKS_NOISE_LOG2 = 15  # CKKS: per-coordinate noise <= 2^15 sqrt(n) scale steps (measured 2^13.6 sqrt(n))
NOISE_MARGIN_BITS = 1  # BFV: another fresh ciphertext may carry up to twice the probe's noise


@dataclass(frozen=True)
class HeParams:
    """One checked parameter set.

    Args:
        scheme: ``"bfv"`` (exact integers) or ``"ckks"`` (approximate reals).
        poly_modulus_degree: N, a power of two in 1024..32768.
        coeff_mod_bit_sizes: bit sizes of the primes of q; the last is SEAL's special prime (key
            switching only), the others are the data primes that ciphertexts carry.
        plain_modulus: BFV's t (None for CKKS): a prime = 1 mod 2N, at most 60 bits.
        scale_bits: CKKS's log2 of the scale (None for BFV), below the first data prime.
        grid_bits: CKKS's decrypted sums are rounded to multiples of 2^-grid_bits (None for BFV).

    Raises:
        ConfigurationError: any check above fails; the message names the limit and the fix.
    """

    scheme: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    plain_modulus: int | None = None
    scale_bits: int | None = None
    grid_bits: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", _chain(self.coeff_mod_bit_sizes))
        if self.scheme not in SCHEMES:
            raise ConfigurationError(f"HeSum(scheme={self.scheme!r}): use one of {list(SCHEMES)}")
        n = self.poly_modulus_degree
        if not _is_int(n) or n not in MAX_LOG_Q_128:
            raise ConfigurationError(f"HeSum(poly_modulus_degree={n!r}): use one of {sorted(MAX_LOG_Q_128)}")
        limit = MAX_LOG_Q_128[n]
        if self.log_q > limit:
            raise ConfigurationError(
                f"HeSum(coeff_mod_bit_sizes={list(self.coeff_mod_bit_sizes)}): log q = {self.log_q} bits exceeds "
                f"the 128-bit security limit of {limit} bits for poly_modulus_degree={n} (HE standard); drop or "
                f"shrink primes (additions need one data prime plus the special prime, e.g. [60, 40]) or raise "
                f"poly_modulus_degree")
        if self.scheme == "bfv":
            self._check_bfv()
        else:
            self._check_ckks()
        _probe(self)  # TenSEAL must accept the set (and BFV must keep a noise budget)

    def _check_bfv(self) -> None:
        import tenseal.sealapi as sealapi  # TenSEAL loads when HE is used, not with secfl

        t, two_n = self.plain_modulus, 2 * self.poly_modulus_degree
        if self.scale_bits is not None or self.grid_bits is not None:
            raise ConfigurationError("HeParams: scale_bits and grid_bits are CKKS parameters; pass None for BFV")
        if not _is_int(t) or not 2 <= t < 1 << MAX_PRIME_BITS or not sealapi.Modulus(int(t)).is_prime():
            raise ConfigurationError(f"HeSum(plain_modulus={t!r}) must be a prime of at most {MAX_PRIME_BITS} bits "
                                     f"with plain_modulus = 1 mod {two_n}, e.g. {DEFAULT_PLAIN_MODULUS} for N = 8192")
        if t % two_n != 1:
            raise ConfigurationError(
                f"HeSum(plain_modulus={t}) must be = 1 mod 2N = {two_n} for batching (SIMD slots); it is "
                f"{t % two_n} mod {two_n}; e.g. {DEFAULT_PLAIN_MODULUS} for N = 8192")

    def _check_ckks(self) -> None:
        scale, grid, first = self.scale_bits, self.grid_bits, self.coeff_mod_bit_sizes[0]
        if self.plain_modulus is not None:
            raise ConfigurationError("HeParams: plain_modulus is a BFV parameter; pass None for CKKS")
        if not _is_int(scale) or not 1 <= scale < first:
            raise ConfigurationError(
                f"HeSum(scale_bits={scale!r}) must be an int smaller than the data prime "
                f"(coeff_mod_bit_sizes[0] = {first}) so sums have headroom; e.g. 40 with [60, 40]")
        if not _is_int(grid) or not 0 <= grid <= scale - MIN_GRID_GAP_BITS:
            raise ConfigurationError(
                f"HeSum(grid_bits={grid!r}) must be an int in 0..scale_bits - {MIN_GRID_GAP_BITS} = "
                f"{scale - MIN_GRID_GAP_BITS}: the rounding grid must be much coarser than the CKKS noise, "
                f"or decrypted sums leak the secret key (Li-Micciancio); lower grid_bits or raise scale_bits")

    # Derived quantities ------------------------------------------------------------------------

    @property
    def log_q(self) -> int:
        """Bits of the whole coefficient modulus, special prime included (what the 128-bit bound limits)."""
        return sum(self.coeff_mod_bit_sizes)

    @property
    def data_bits(self) -> tuple[int, ...]:
        """Bit sizes of the primes a ciphertext carries (the special prime dropped)."""
        return self.coeff_mod_bit_sizes[:-1]

    @property
    def slots(self) -> int:
        """Values per ciphertext: N for BFV, N/2 for CKKS."""
        return self.poly_modulus_degree if self.scheme == "bfv" else self.poly_modulus_degree // 2

    @property
    def scale(self) -> float | None:
        return None if self.scale_bits is None else float(2**self.scale_bits)

    def chunk_sizes(self, d: int) -> list[int]:
        """The sizes of the ciphertexts TenSEAL cuts a vector of ``d`` values into."""
        full, rest = divmod(d, self.slots)
        return [self.slots] * full + ([rest] if rest else [])

    def ciphertext_bytes(self) -> tuple[int, int]:
        """(min, max) serialized size of one honest fresh ciphertext (2 polynomials at the data level).

        Its coefficients are uniform mod each data prime p >= 2^(bits-1), so no encoding is shorter
        than 2N sum(bits - 1) / 8 bytes; SEAL's zstd adds at most a little to the raw 2N L 8 bytes.
        """
        n, data = self.poly_modulus_degree, self.data_bits
        raw = 2 * n * len(data) * 8
        return 2 * n * sum(b - 1 for b in data) // 8, raw + raw // 64 + 1024

    def vector_bytes(self, d: int) -> tuple[int, int]:
        """(min, max) size of TenSEAL's serialized vector of ``d`` values (protobuf framing included)."""
        k = len(self.chunk_sizes(d))
        low, high = self.ciphertext_bytes()
        return k * low, k * (high + 11) + 5 * k + 6 + 9

    # Capacity ----------------------------------------------------------------------------------

    def fresh_noise_budget(self) -> int | None:
        """BFV: SEAL's invariant noise budget (bits) of a fresh ciphertext, measured once per set."""
        return _probe(self)

    def bfv_max_group(self, bits: int) -> int:
        """BFV: the largest group whose sum of centred values mod 2^bits decrypts exactly.

        Plain modulus: |sum| <= n 2^(bits-1) must stay below t/2, i.e. n <= (t - 1) / 2^bits.
        Noise: each addition adds at most one fresh noise, so n <= 2^(budget - margin).
        """
        return min((self.plain_modulus - 1) >> bits, self.bfv_noise_max_group())

    def bfv_noise_max_group(self) -> int:
        """BFV: the most fresh ciphertexts whose sum keeps a noise budget (2^(budget - margin))."""
        return 1 << max(0, self.fresh_noise_budget() - NOISE_MARGIN_BITS)

    def ckks_max_abs_sum(self) -> float:
        """CKKS: |sum| must stay below this in every coordinate (q_data / (2 scale), one bit kept for noise)."""
        data = self.data_bits
        return 2.0 ** (sum(data) - len(data) - self.scale_bits - 2)

    def ckks_tolerance(self, n: int) -> float:
        """CKKS: bound on |decrypted sum - exact sum| for n clients: half a grid step plus the noise."""
        return 2.0 ** -(self.grid_bits + 1) + math.sqrt(n) * 2.0 ** (CKKS_NOISE_LOG2 - self.scale_bits)

    def describe(self) -> dict[str, object]:
        return {"scheme": self.scheme, "poly_modulus_degree": self.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes), "plain_modulus": self.plain_modulus,
                "scale_bits": self.scale_bits, "grid_bits": self.grid_bits}


def new_context(params: HeParams, *, threads: int = 1) -> ts.Context:
    """A fresh TenSEAL context (new secret key) for ``params``; only the key holder calls this."""
    import tenseal as ts

    if params.scheme == "bfv":
        return ts.context(ts.SCHEME_TYPE.BFV, params.poly_modulus_degree, plain_modulus=params.plain_modulus,
                          coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes), n_threads=threads)
    context = ts.context(ts.SCHEME_TYPE.CKKS, params.poly_modulus_degree,
                         coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes), n_threads=threads)
    context.global_scale = params.scale
    return context


def matches(context: ts.Context, params: HeParams) -> bool:
    """Whether a loaded context has exactly the parameters ``params`` (scheme, N, primes, t, scale)."""
    parms = context.seal_context().data.key_context_data().parms()
    scheme = "BFV" if params.scheme == "bfv" else "CKKS"
    bits = tuple(m.bit_count() for m in parms.coeff_modulus())
    t = parms.plain_modulus().value()
    return (parms.scheme().name == scheme and parms.poly_modulus_degree() == params.poly_modulus_degree
            and bits == params.coeff_mod_bit_sizes and t == (params.plain_modulus or 0)
            and (params.scale is None or context.global_scale == params.scale))


@functools.lru_cache(maxsize=64)
def _probe(params: HeParams) -> int | None:
    """Build a throw-away context; for BFV return the fresh noise budget of a full-range ciphertext."""
    import tenseal as ts
    import tenseal.sealapi as sealapi

    try:
        context = new_context(params)
        if params.scheme == "ckks":
            ts.ckks_vector(context, [0.5] * params.slots)
            return None
        half = params.plain_modulus // 2
        values = np.random.default_rng().integers(-half, half, size=params.slots, endpoint=True)
        vector = ts.bfv_vector(context, values.tolist())
        decryptor = sealapi.Decryptor(context.seal_context().data, context.secret_key().data)
        budget = decryptor.invariant_noise_budget(vector.ciphertext()[0])
    except (ValueError, RuntimeError, TypeError) as error:
        raise ConfigurationError(f"TenSEAL refuses {params.describe()}: {error}; use e.g. the defaults "
                                 "(N = 8192, [60, 40])") from None
    if budget <= NOISE_MARGIN_BITS:
        raise ConfigurationError(
            f"HeSum(plain_modulus={params.plain_modulus}) leaves a noise budget of {budget} bits with data primes "
            f"{list(params.data_bits)}: lower plain_modulus or enlarge the first prime")
    return budget


def _chain(sizes: object) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise ConfigurationError(f"HeSum(coeff_mod_bit_sizes={sizes!r}) must be a sequence of ints, e.g. (60, 40)")
    chain = tuple(sizes)
    if len(chain) < 2:
        raise ConfigurationError(
            f"HeSum(coeff_mod_bit_sizes={list(chain)}) needs at least 2 primes: TenSEAL always builds key-switching "
            "keys, so the chain is one data prime plus the special prime, e.g. (60, 40)")
    if not all(_is_int(b) and 2 <= b <= MAX_PRIME_BITS for b in chain):
        raise ConfigurationError(
            f"HeSum(coeff_mod_bit_sizes={list(chain)}): every prime size must be an int in 2..{MAX_PRIME_BITS}")
    return chain


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class HeGroupParams:
    """What a parameter set guarantees for one group size (``HeSum.params(group_size)``).

    Attributes:
        parameters: the parameter set.
        group_size: the number of clients summed.
        bits: BFV: the ring Z_2^bits the inputs live in (None for CKKS).
        max_group_size: BFV: the largest group whose sums are exact at ``bits`` (None for CKKS).
        max_abs_value: CKKS: every client's |x| must stay below this (None for BFV).
        tolerance: CKKS: bound on |decrypted sum - exact sum| per coordinate; 0 for BFV (exact).
    """

    parameters: HeParams
    group_size: int
    bits: int | None
    max_group_size: int | None
    max_abs_value: float | None
    tolerance: float
