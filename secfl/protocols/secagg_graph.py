"""The SecAgg+ neighbour graph of a bound instance, computable in O(k) by each client.

The graph is the Harary graph H(n, k) (each client linked to the k/2 clients on either side of it on
a ring) after a pseudorandom relabelling of the roster: ring position = pi(roster index), with pi a
keyed permutation of [0, n) (a balanced Feistel network on the smallest even bit width covering n,
with cycle walking). Its key is SHA-256 of the instance digest, so the graph is fixed the moment the
instance (session, round, group, roster) is: it does not depend on the keys clients advertise later.

Grinding: the server picks the session id, so it can try G sessions offline and keep the graph it
likes best. Every per-instance probability bound of ``secagg_params`` (sigma bits) then holds with
G times the probability, i.e. sigma - log2(G) bits; with corrupt_rate = 0 (the default) no graph is
better for the server than another. A client locates its neighbours with k + 1 evaluations of pi or
its inverse, never touching the other n - k - 1 roster entries.
"""

from __future__ import annotations

import hashlib

from secfl.protocols.secagg_instance import Instance

_ROUNDS = 8  # Feistel rounds: >= 4 suffice for a pseudorandom permutation (Luby-Rackoff)


class Relabelling:
    """A keyed permutation pi of [0, n) and its inverse."""

    def __init__(self, key: bytes, n: int) -> None:
        self.key, self.n = key, n
        bits = max(2, (max(n - 1, 1)).bit_length())
        self.half = (bits + 1) // 2
        self.mask = (1 << self.half) - 1

    def _f(self, r: int, x: int) -> int:
        data = self.key + bytes((r,)) + x.to_bytes(4, "little")
        return int.from_bytes(hashlib.sha256(data).digest()[:4], "little") & self.mask

    def _forward(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for r in range(_ROUNDS):
            left, right = right, left ^ self._f(r, right)
        return (left << self.half) | right

    def _backward(self, y: int) -> int:
        left, right = y >> self.half, y & self.mask
        for r in reversed(range(_ROUNDS)):
            left, right = right ^ self._f(r, left), left
        return (left << self.half) | right

    def __call__(self, x: int) -> int:
        """pi(x) for x in [0, n): cycle walking keeps the permutation inside the domain."""
        y = self._forward(x)
        while y >= self.n:
            y = self._forward(y)
        return y

    def inverse(self, y: int) -> int:
        x = self._backward(y)
        while x >= self.n:
            x = self._backward(x)
        return x


def relabelling(instance: Instance) -> Relabelling:
    key = hashlib.sha256(b"secfl-v1 secagg graph" + instance.digest).digest()
    return Relabelling(key, instance.n)


def neighbours(instance: Instance, k: int, client: int, pi: Relabelling | None = None) -> frozenset[int]:
    """The k neighbours of ``client`` (every other member when k >= n - 1); O(k) work."""
    n = instance.n
    index = instance.index(client)
    if index < 0:
        raise ValueError(f"client {client} is not in the roster")
    if k >= n - 1:
        return frozenset(instance.roster[:index] + instance.roster[index + 1:])
    pi = pi or relabelling(instance)
    position = pi(index)
    half = k // 2
    return frozenset(instance.roster[pi.inverse((position + j) % n)] for j in range(-half, half + 1) if j)


def graph(instance: Instance, k: int) -> dict[int, frozenset[int]]:
    """Every member's neighbours (the server's view); O(n k)."""
    n, roster = instance.n, instance.roster
    if k >= n - 1:
        everyone = frozenset(roster)
        return {c: everyone - {c} for c in roster}
    pi = relabelling(instance)
    ring = [0] * n
    for index in range(n):
        ring[pi(index)] = roster[index]
    half = k // 2
    return {ring[p]: frozenset(ring[(p + j) % n] for j in range(-half, half + 1) if j) for p in range(n)}
