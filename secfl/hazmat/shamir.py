"""t-of-n Shamir secret sharing over GF(2^31 - 1), vectorised over many secrets with numpy.

Threat model: any ``threshold - 1`` shares are independent of the secret (information-theoretic),
provided the polynomial coefficients come from a CSPRNG (``OS_RANDOM`` by default). Shares come off
the wire, so ``combine`` checks every share beyond the first ``threshold`` against the interpolated
polynomial and raises an opaque ``ProtocolIntegrityError`` on any mismatch; with exactly
``threshold`` shares nothing can be checked and a corrupted share gives a wrong secret (the caller
authenticates shares with AEAD, so this only matters against a sender who lies about its own share).
Field elements live in numpy uint64 below p < 2^31, so a product of two fits without overflow.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence

import numpy as np

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError
from secfl.hazmat.randomness import OS_RANDOM, Randomness, uniform_mod

__all__ = ["PRIME", "SECRET_BYTES", "SECRET_ELEMENTS", "encode_secret", "decode_secret", "split", "combine",
           "combine_robust"]

PRIME = 2**31 - 1
SECRET_BYTES = 32
SECRET_ELEMENTS = 9  # 9 x 30 bits >= 256 bits
_ELEMENT_BITS = 30
_TOP_BITS = 8 * SECRET_BYTES - _ELEMENT_BITS * (SECRET_ELEMENTS - 1)  # 16 bits in the last element
_P = np.uint64(PRIME)
_LOW_BITS = 16  # combine splits shares into 16 + 15 bits so integer matmuls cannot overflow
_BLOCK = 1 << 16  # at most this many terms per matmul sum: 2^16 * 2^31 * 2^16 = 2^63


def encode_secret(secret: bytes) -> np.ndarray:
    """A 32-byte secret as 9 field elements of 30 bits each (little-endian bit order).

    Args:
        secret: exactly 32 bytes.

    Returns:
        uint64 array of shape (9,); the last element holds the top 16 bits.

    Raises:
        ConfigurationError: ``secret`` is not 32 bytes.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) != SECRET_BYTES:
        got = f"{len(secret)} bytes" if isinstance(secret, (bytes, bytearray)) else type(secret).__name__
        raise ConfigurationError(f"secret must be {SECRET_BYTES} bytes, got {got}; share 32-byte keys or seeds")
    value = int.from_bytes(secret, "little")
    mask = (1 << _ELEMENT_BITS) - 1
    return np.array([(value >> (_ELEMENT_BITS * i)) & mask for i in range(SECRET_ELEMENTS)], dtype=np.uint64)


def decode_secret(elements: np.ndarray) -> bytes:
    """Inverse of ``encode_secret``.

    Args:
        elements: 9 field elements (e.g. one row of ``combine``'s output).

    Returns:
        The 32-byte secret.

    Raises:
        ConfigurationError: not 9 unsigned integers.
        ProtocolIntegrityError: an element >= 2^30 or stray bits above bit 256 (not an encoded secret).
    """
    a = np.asarray(elements)
    if a.shape != (SECRET_ELEMENTS,) or a.dtype.kind not in "ui":
        raise ConfigurationError(
            f"elements must be {SECRET_ELEMENTS} integers, got shape {a.shape} {a.dtype}; pass one combined secret")
    values = [int(v) for v in a]
    if any(not 0 <= v < (1 << _ELEMENT_BITS) for v in values) or values[-1] >> _TOP_BITS:
        raise ProtocolIntegrityError()
    return sum(v << (_ELEMENT_BITS * i) for i, v in enumerate(values)).to_bytes(SECRET_BYTES, "little")


def _points(xs: Sequence[int]) -> list[int]:
    try:
        points = [operator.index(x) for x in xs]
    except TypeError:
        raise ConfigurationError("xs must be a sequence of ints; pass the share holders' indices 1..PRIME-1") from None
    bad = [x for x in points if not 1 <= x < PRIME]
    if bad:
        raise ConfigurationError(f"xs must lie in 1..PRIME-1, got {bad[0]}; number share holders from 1")
    if len(set(points)) != len(points):
        raise ConfigurationError("xs must be distinct, got a duplicate; give every share holder its own index")
    return points


def _threshold(threshold: int, available: int) -> int:
    try:
        t = operator.index(threshold)
    except TypeError:
        raise ConfigurationError(f"threshold must be an int, got {type(threshold).__name__}") from None
    if not 1 <= t <= available:
        raise ConfigurationError(
            f"threshold must be in 1..{available} (one per x in xs), got {t}; "
            "collect at least threshold shares or lower the threshold")
    return t


def split(secrets: np.ndarray, *, xs: Sequence[int], threshold: int,
          randomness: Randomness = OS_RANDOM) -> np.ndarray:
    """Share each field element of ``secrets`` with a random polynomial of degree ``threshold - 1``.

    Args:
        secrets: uint64 array [m, c] of field elements (< PRIME): m secrets of c elements each.
        xs: distinct evaluation points in 1..PRIME-1, one per share holder.
        threshold: number of shares needed to reconstruct (1..len(xs)).
        randomness: source of the polynomial coefficients (OS CSPRNG by default).

    Returns:
        uint64 array [len(xs), m, c]: row i is the share for the holder at ``xs[i]``.

    Raises:
        ConfigurationError: bad shape/dtype, elements out of the field, bad xs or threshold.
    """
    if not isinstance(secrets, np.ndarray) or secrets.ndim != 2 or secrets.dtype != np.uint64:
        what = f"{secrets.ndim}-D {secrets.dtype}" if isinstance(secrets, np.ndarray) else type(secrets).__name__
        raise ConfigurationError(f"secrets must be a 2-D uint64 array [m, c], got {what}; stack encode_secret rows")
    if secrets.size and int(secrets.max()) >= PRIME:
        raise ConfigurationError("secrets must hold field elements < PRIME, got a larger one; use encode_secret")
    points = _points(xs)
    t = _threshold(threshold, len(points))
    m, c = secrets.shape
    coeffs = uniform_mod(randomness, PRIME, (t - 1) * m * c).reshape(t - 1, m, c)
    x = np.array(points, dtype=np.uint64).reshape(-1, 1, 1)
    shares = np.zeros((len(points), m, c), dtype=np.uint64)
    for coeff in (*coeffs[::-1], secrets):  # Horner: top coefficient first, constant term (the secret) last
        shares *= x
        shares += coeff
        shares %= _P
    return shares


def _weights(targets: list[int], points: list[int]) -> np.ndarray:
    """Lagrange weights L_i(z) mod p for each target z (rows) and interpolation point x_i (columns)."""
    p = PRIME
    bary = []  # barycentric weights w_i = 1 / prod_{j != i} (x_i - x_j)
    for i, xi in enumerate(points):
        den = 1
        for j, xj in enumerate(points):
            if j != i:
                den = den * (xi - xj) % p
        bary.append(pow(den, -1, p))
    rows = []
    for z in targets:
        ell = 1
        for xj in points:
            ell = ell * (z - xj) % p
        rows.append([ell * w * pow(z - xi, -1, p) % p for xi, w in zip(points, bary)])
    return np.array(rows, dtype=np.uint64)


def _apply(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(weights @ values) mod p without overflow: values split into 16 + 15 bits, sums in blocks."""
    lo = values & np.uint64((1 << _LOW_BITS) - 1)
    hi = values >> np.uint64(_LOW_BITS)
    out = np.zeros((weights.shape[0], values.shape[1]), dtype=np.uint64)
    for start in range(0, values.shape[0], _BLOCK):
        w = weights[:, start:start + _BLOCK]
        part_lo = (w @ lo[start:start + _BLOCK]) % _P
        part_hi = (w @ hi[start:start + _BLOCK]) % _P
        out += (part_lo + (part_hi << np.uint64(_LOW_BITS))) % _P
        out %= _P
    return out


def combine(xs: Sequence[int], shares: np.ndarray, *, threshold: int) -> np.ndarray:
    """Reconstruct the secrets from shares; every share beyond the first ``threshold`` is verified.

    Args:
        xs: the distinct points the shares were evaluated at, in the order of ``shares``.
        shares: uint64 array [s, m, c] with s = len(xs) >= threshold.
        threshold: the threshold used by ``split``.

    Returns:
        uint64 array [m, c] of the secrets (interpolated at 0 from the first ``threshold`` shares).

    Raises:
        ConfigurationError: fewer than ``threshold`` shares, duplicate or out-of-range xs, bad shape/dtype.
        ProtocolIntegrityError: a share is not a field element, or an extra share is off the polynomial.
    """
    points = _points(xs)
    if not isinstance(shares, np.ndarray) or shares.ndim != 3 or shares.dtype != np.uint64:
        what = f"{shares.ndim}-D {shares.dtype}" if isinstance(shares, np.ndarray) else type(shares).__name__
        raise ConfigurationError(f"shares must be a 3-D uint64 array [s, m, c], got {what}; stack the share arrays")
    if shares.shape[0] != len(points):
        raise ConfigurationError(
            f"shares has {shares.shape[0]} rows but xs has {len(points)} points; pass one x per share row")
    t = _threshold(threshold, len(points))
    if shares.size and int(shares.max()) >= PRIME:
        raise ProtocolIntegrityError()
    s, m, c = shares.shape
    flat = shares.reshape(s, m * c)
    predicted = _apply(_weights([0, *points[t:]], points[:t]), flat[:t])
    if not np.array_equal(predicted[1:], flat[t:]):
        raise ProtocolIntegrityError()
    return predicted[0].reshape(m, c)


def combine_robust(xs: Sequence[int], shares: np.ndarray, *, threshold: int,
                   check: Callable[[np.ndarray], bool]) -> tuple[np.ndarray, list[int]]:
    """Reconstruct despite wrong shares: locate them by Berlekamp-Welch decoding and drop them.

    With s shares of which e are wrong, decoding succeeds whenever s >= threshold + 2e; below that,
    threshold-subsets are tried against ``check`` (at most 4,096 of them), which finds the secret
    whenever threshold right shares are present. The result must pass ``check`` (e.g. the secret's
    commitment), so a wrong secret is never returned.

    Args:
        xs: the distinct points of the shares.
        shares: uint64 array [s, m, c] (values off the wire: anything may be wrong).
        threshold: the threshold used by ``split``.
        check: True for the right secrets [m, c].

    Returns:
        (secrets [m, c], the xs of the shares off the polynomial found: exactly the wrong ones when
        s >= threshold + 2e; below that, wrong shares whose errors cancel may go unnamed).

    Raises:
        ProtocolIntegrityError: too many wrong shares to correct (opaque on purpose).
        ConfigurationError: as ``combine``.
    """
    try:
        secrets = combine(xs, shares, threshold=threshold)
        if _passes(check, secrets):
            return secrets, []
    except ProtocolIntegrityError:
        pass
    points = _points(xs)
    flat = shares.reshape(shares.shape[0], -1)
    in_field = [i for i in range(len(points)) if int(flat[i].max(initial=0)) < PRIME]
    # a random combination of the columns: a share wrong anywhere is wrong here but with probability 1/p
    weights = [int(w) + 1 for w in uniform_mod(OS_RANDOM, PRIME - 1, flat.shape[1])]
    column = [sum(w * int(v) for w, v in zip(weights, flat[i])) % PRIME for i in in_field]
    try:
        wrong = _locate_errors([points[i] for i in in_field], column, threshold)
        keep = [in_field[i] for i in range(len(in_field)) if i not in wrong]
        if len(keep) < threshold:
            raise ProtocolIntegrityError()
        secrets = combine([points[i] for i in keep], shares[keep], threshold=threshold)
        if not _passes(check, secrets):
            raise ProtocolIntegrityError()
    except ProtocolIntegrityError:  # too few shares to decode: search threshold-subsets against ``check``
        keep, secrets = _search_subsets(points, shares, in_field, threshold, check)
    bad = sorted(set(range(len(points))) - set(keep))
    return secrets, [points[i] for i in bad]


_MAX_SUBSETS = 4096


def _search_subsets(points, shares, candidates, threshold, check):
    """The first threshold-subset whose secret passes ``check``, and every share on its polynomial."""
    flat = shares.reshape(shares.shape[0], -1)
    for count, subset in enumerate(itertools.combinations(candidates, threshold)):
        if count >= _MAX_SUBSETS:
            break
        subset = list(subset)
        secrets = combine([points[i] for i in subset], shares[subset], threshold=threshold)
        if _passes(check, secrets):
            others = [i for i in candidates if i not in subset]
            predicted = _apply(_weights([points[i] for i in others], [points[i] for i in subset]), flat[subset])
            on_curve = [i for row, i in zip(predicted, others) if np.array_equal(row, flat[i])]
            return sorted(subset + on_curve), secrets
    raise ProtocolIntegrityError()


def _passes(check: Callable[[np.ndarray], bool], secrets: np.ndarray) -> bool:
    try:
        return bool(check(secrets))
    except (ProtocolIntegrityError, ValueError):
        return False


def _locate_errors(xs: list[int], ys: list[int], threshold: int) -> set[int]:
    """Berlekamp-Welch over GF(p): the indices where ys is off the unique degree < threshold polynomial."""
    p, m = PRIME, len(xs)
    e = (m - threshold) // 2
    if e <= 0:
        raise ProtocolIntegrityError()
    width = threshold + 2 * e  # unknowns: Q (threshold + e coefficients), then E below x^e (e coefficients)
    rows = []
    for x, y in zip(xs, ys):
        powers = [pow(x, j, p) for j in range(threshold + e)]
        # Q(x) - y (E(x) - x^e) = y x^e: unknowns Q's coefficients, then E's below x^e; right-hand side last
        rows.append(powers + [(-y * powers[j]) % p for j in range(e)] + [y * powers[e] % p])
    solution = _solve(rows, width, p)
    q, low = solution[:threshold + e], solution[threshold + e:]
    quotient = _divide(q, low + [1], p)  # Q / E, with E monic of degree e
    if quotient is None:
        raise ProtocolIntegrityError()
    wrong = {i for i, (x, y) in enumerate(zip(xs, ys)) if _evaluate(quotient, x, p) != y}
    if len(wrong) > e:
        raise ProtocolIntegrityError()
    return wrong


def _solve(rows: list[list[int]], width: int, p: int) -> list[int]:
    """One solution of an augmented linear system mod p (free variables 0); integrity error if none."""
    rows = [row[:] for row in rows]
    pivots, r = [], 0
    for col in range(width):
        pivot = next((i for i in range(r, len(rows)) if rows[i][col]), None)
        if pivot is None:
            continue
        rows[r], rows[pivot] = rows[pivot], rows[r]
        inv = pow(rows[r][col], -1, p)
        rows[r] = [v * inv % p for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col]:
                f = rows[i][col]
                rows[i] = [(a - f * b) % p for a, b in zip(rows[i], rows[r])]
        pivots.append(col)
        r += 1
    if any(row[width] for row in rows[r:]):
        raise ProtocolIntegrityError()
    solution = [0] * width
    for i, col in enumerate(pivots):
        solution[col] = rows[i][width]
    return solution


def _divide(num: list[int], den: list[int], p: int) -> list[int] | None:
    """num / den (coefficients lowest first, den monic); None if the remainder is not zero."""
    num, d = num[:], len(den) - 1
    out = [0] * max(len(num) - d, 1)
    for i in range(len(num) - 1, d - 1, -1):
        coef = num[i]
        if coef:
            out[i - d] = coef
            for j in range(d + 1):
                num[i - d + j] = (num[i - d + j] - coef * den[j]) % p
    return out if not any(num[:d]) else None


def _evaluate(poly: list[int], x: int, p: int) -> int:
    acc = 0
    for coef in reversed(poly):
        acc = (acc * x + coef) % p
    return acc
