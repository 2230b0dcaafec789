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


class Edges:
    """Hierarchical FL: client ``c`` belongs to edge ``c // devices_per_edge`` and every group lies inside one
    edge, so each group sum is a partial sum of one edge's devices (the edge server's view).

    Args:
        devices_per_edge: the devices under each edge (client ids are numbered edge by edge).
        bucket_size: None: one group per edge (the edge learns only its devices' sum); an int s: each edge's
            devices are shuffled every round and cut into buckets of about s (sizes differing by at most one),
            for a robust rule over bucket sums inside each edge.

    Every round must hold every device of the edges it touches (the tree has no partial edges): a
    round whose sampled ids cut an edge is refused when it is grouped (a scenario checks both before training:
    whole edges of ``data.num_clients``, every client in every round).
    """

    name: ClassVar[str] = "edges"

    def __init__(self, devices_per_edge: int, bucket_size: int | None = None) -> None:
        for key, value in (("devices_per_edge", devices_per_edge), ("bucket_size", bucket_size)):
            if value is None and key == "bucket_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"Edges({key}={value!r}): {key} must be an int >= 1")
        if bucket_size is not None and bucket_size > devices_per_edge:
            raise ConfigurationError(f"Edges(bucket_size={bucket_size}) exceeds devices_per_edge = {devices_per_edge}:"
                                     " leave bucket_size unset for one group per edge")
        self.devices_per_edge = devices_per_edge
        self.bucket_size = devices_per_edge if bucket_size is None else bucket_size
        self.per_edge = math.ceil(devices_per_edge / self.bucket_size)  # buckets inside one edge

    def num_groups(self, num_clients: int) -> int:
        return math.ceil(num_clients / self.devices_per_edge) * self.per_edge

    def max_group_size(self, num_clients: int) -> int:
        return min(num_clients, math.ceil(self.devices_per_edge / self.per_edge))

    def min_group_size(self, num_clients: int) -> int:
        """0 when ``num_clients`` cannot be whole edges (no round of that size can be grouped)."""
        return 0 if num_clients % self.devices_per_edge else self.devices_per_edge // self.per_edge

    def edge_of(self, client_id: int) -> int:
        return int(client_id) // self.devices_per_edge

    def assign(self, client_ids: Sequence[int], *, rng: np.random.Generator) -> list[list[int]]:
        by_edge: dict[int, list[int]] = {}
        for cid in client_ids:
            by_edge.setdefault(self.edge_of(cid), []).append(int(cid))
        groups = []
        for edge in sorted(by_edge):
            members = by_edge[edge]
            if len(members) != self.devices_per_edge:
                raise ConfigurationError(f"grouping 'edges': edge {edge} has {len(members)} of its "
                                         f"{self.devices_per_edge} devices in this round; sample whole edges")
            order = rng.permutation(np.asarray(members, dtype=np.int64)) if self.per_edge > 1 else members
            groups += [[int(c) for c in part] for part in np.array_split(np.asarray(order), self.per_edge)]
        return groups

    def __repr__(self) -> str:
        return f"Edges(devices_per_edge={self.devices_per_edge}, bucket_size={self.bucket_size})"
