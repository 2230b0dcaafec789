"""Groupings: how a round's clients are split into secure-sum groups (the privacy/robustness dial).

Group size 1 is no secure aggregation; one group is the full secure sum; buckets sit in between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError


class Individual:
    """Every client is its own group: the server sees each (encoded) update."""

    name: ClassVar[str] = "individual"

    def num_groups(self, num_clients: int) -> int:
        return num_clients

    def max_group_size(self, num_clients: int) -> int:
        return 1

    def min_group_size(self, num_clients: int) -> int:
        return 1

    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]:
        return [[int(c)] for c in client_ids]

    def __repr__(self) -> str:
        return "Individual()"


class OneGroup:
    """All clients in one group: the server learns only the total."""

    name: ClassVar[str] = "one_group"

    def num_groups(self, num_clients: int) -> int:
        return 1

    def max_group_size(self, num_clients: int) -> int:
        return num_clients

    def min_group_size(self, num_clients: int) -> int:
        return num_clients

    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]:
        return [[int(c) for c in client_ids]]

    def __repr__(self) -> str:
        return "OneGroup()"


class Buckets:
    """Shuffle clients with a fresh random permutation each round and cut them into buckets.

    Args:
        size: the target bucket size s; n clients give ceil(n / s) buckets whose sizes differ by
            at most one (so no bucket is left with a lone client when n is not a multiple of s).

    References: Karimireddy, He, Jaggi, Byzantine-Robust Learning on Heterogeneous Datasets via
        Bucketing, ICLR 2022.
    """

    name: ClassVar[str] = "buckets"

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigurationError(f"Buckets(size={size!r}): size must be an int >= 1")
        self.size = size

    def num_groups(self, num_clients: int) -> int:
        return math.ceil(num_clients / self.size)

    def max_group_size(self, num_clients: int) -> int:
        return math.ceil(num_clients / self.num_groups(num_clients))

    def min_group_size(self, num_clients: int) -> int:
        return num_clients // self.num_groups(num_clients)

    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]:
        order = [int(c) for c in rng.permutation(np.asarray(client_ids))]
        return [part.tolist() for part in np.array_split(np.array(order, dtype=np.int64), self.num_groups(len(order)))]

    def __repr__(self) -> str:
        return f"Buckets(size={self.size})"
