"""Split a labelled dataset across simulated clients: IID, Dirichlet label skew, label shards or natural owners."""

from __future__ import annotations

import math

import numpy as np

from secfl.exceptions import ConfigurationError

__all__ = ["PARTITIONS", "partition"]

PARTITIONS: tuple[str, ...] = ("iid", "dirichlet", "shards", "natural")

_MAX_DIRICHLET_ATTEMPTS = 100
_KIND_PARAMS = {"dirichlet": "alpha", "shards": "shards_per_client", "natural": "natural"}


def partition(
    labels: np.ndarray,
    *,
    num_clients: int,
    kind: str,
    rng: np.random.Generator,
    alpha: float | None = None,
    shards_per_client: int | None = None,
    min_per_client: int = 10,
    natural: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Assign every example to one client.

    Kinds:
        ``iid``: a random permutation cut into near-equal parts.
        ``dirichlet``: per class, proportions ``p ~ Dir(alpha * 1)`` over clients and the shuffled class
        indices are cut at ``floor(cumsum(p) * n_class)`` (Hsu et al. 2019; the semantics of
        flwr-datasets' ``DirichletPartitioner``). Redrawn until every client holds ``min_per_client``
        examples, at most 100 times. Smaller ``alpha`` means more label skew.
        ``shards``: examples sorted by label (random order within a class) are cut into
        ``num_clients * shards_per_client`` equal shards and each client gets ``shards_per_client``
        random shards (McMahan et al. 2017). When the shard count does not divide the data, the
        ``n mod num_shards`` left-over examples are chosen at random and dropped (assigned to no client).
        ``natural``: client ``i`` gets the examples whose ``natural`` id is the i-th smallest id (any
        dataset with owner ids: synthetic, or your data's ``client`` array).

    Args:
        labels: int labels ``[n]``.
        num_clients: Number of clients, >= 1.
        kind: One of ``PARTITIONS``.
        rng: The random generator (all randomness comes from it).
        alpha: Dirichlet concentration > 0; ``dirichlet`` only, required there.
        shards_per_client: Shards per client >= 1; ``shards`` only, required there.
        min_per_client: Minimum examples every client must end up with.
        natural: Owning-client id of each example ``[n]``; ``natural`` only, required there.

    Returns:
        One sorted int64 index array per client; the arrays are disjoint and, except for the examples
        ``shards`` drops, cover every example.

    Raises:
        ConfigurationError: Bad or missing parameters, a parameter that does not apply to ``kind``, too
            few examples for ``num_clients * min_per_client``, or no partition meeting ``min_per_client``.
    """
    labels = _check_common(labels, num_clients, kind, rng, min_per_client)
    given = {"alpha": alpha, "shards_per_client": shards_per_client, "natural": natural}
    needed = _KIND_PARAMS.get(kind)
    for key, value in given.items():
        if key != needed and value is not None:
            raise ConfigurationError(f"{key} does not apply to partition kind={kind!r}; remove it")
    if needed is not None and given[needed] is None:
        raise ConfigurationError(f"partition kind={kind!r} requires {needed}; pass it")

    if kind == "iid":
        parts = np.array_split(rng.permutation(labels.size), num_clients)
    elif kind == "dirichlet":
        parts = _dirichlet(labels, num_clients, rng, alpha, min_per_client)
    elif kind == "shards":
        parts = _shards(labels, num_clients, rng, shards_per_client, min_per_client)
    else:
        parts = _natural(labels, num_clients, natural, min_per_client)
    return [np.sort(part).astype(np.int64) for part in parts]


def _check_common(labels: object, num_clients: object, kind: object, rng: object, min_per_client: object) -> np.ndarray:
    """Validate the arguments every kind uses; return labels as a 1-D array."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ConfigurationError(f"labels has shape {labels.shape} and dtype {labels.dtype}; pass a 1-D integer array")
    if kind not in PARTITIONS:
        raise ConfigurationError(f"partition kind={kind!r} is unknown; choose one of {', '.join(PARTITIONS)}")
    if not isinstance(rng, np.random.Generator):
        raise ConfigurationError(f"rng={rng!r} is not a numpy Generator; pass np.random.default_rng(seed)")
    for key, value, low in (("num_clients", num_clients, 1), ("min_per_client", min_per_client, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ConfigurationError(f"{key}={value!r} is invalid; pass an integer >= {low}")
    if num_clients * min_per_client > labels.size:
        raise ConfigurationError(
            f"num_clients={num_clients} * min_per_client={min_per_client} = {num_clients * min_per_client} "
            f"exceeds the {labels.size} examples; use fewer clients or a lower min_per_client"
        )
    return labels


def _dirichlet(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, alpha: object, min_per_client: int
) -> list[np.ndarray]:
    """Label-skewed split with Dirichlet(alpha) class proportions, redrawn until min_per_client holds."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha) or alpha <= 0:
        raise ConfigurationError(f"alpha={alpha!r} is invalid; pass a finite number > 0, e.g. 0.5")
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(_MAX_DIRICHLET_ATTEMPTS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
        for members in by_class:
            members = rng.permutation(members)
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, float(alpha)))) * members.size).astype(np.int64)[:-1]
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].append(chunk)
        result = [np.concatenate(chunks) for chunks in parts]
        if min(part.size for part in result) >= min_per_client:
            return result
    raise ConfigurationError(
        f"no Dirichlet partition with alpha={alpha} gave all {num_clients} clients >= min_per_client="
        f"{min_per_client} examples in {_MAX_DIRICHLET_ATTEMPTS} draws; raise alpha, lower min_per_client "
        "or use fewer clients"
    )


def _shards(
    labels: np.ndarray, num_clients: int, rng: np.random.Generator, shards_per_client: object, min_per_client: int
) -> list[np.ndarray]:
    """McMahan et al. label shards: sort by label, cut into equal shards, deal them out at random."""
    if isinstance(shards_per_client, bool) or not isinstance(shards_per_client, int | np.integer) or (
        shards_per_client < 1
    ):
        raise ConfigurationError(f"shards_per_client={shards_per_client!r} is invalid; pass an integer >= 1, e.g. 2")
    num_shards = num_clients * shards_per_client
    shard_size = labels.size // num_shards
    if shards_per_client * shard_size < max(min_per_client, 1):
        raise ConfigurationError(
            f"shards give each client {shards_per_client} x {shard_size} = {shards_per_client * shard_size} examples, "
            f"below min_per_client={min_per_client}; lower shards_per_client, num_clients or min_per_client"
        )
    kept = rng.permutation(labels.size)[: num_shards * shard_size]
    ordered = kept[np.argsort(labels[kept], kind="stable")]
    shards = ordered.reshape(num_shards, shard_size)
    owners = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [shards[row].reshape(-1) for row in owners]


def _natural(labels: np.ndarray, num_clients: int, natural: object, min_per_client: int) -> list[np.ndarray]:
    """One client per distinct id of ``natural``, in increasing id order."""
    natural = np.asarray(natural)
    if natural.shape != labels.shape or natural.dtype.kind not in "iu":
        raise ConfigurationError(
            f"natural has shape {natural.shape} and dtype {natural.dtype}; pass one integer client id per label "
            f"(shape {labels.shape})"
        )
    ids, counts = np.unique(natural, return_counts=True)
    if ids.size != num_clients:
        raise ConfigurationError(
            f"num_clients={num_clients} but natural has {ids.size} distinct client ids; pass num_clients={ids.size}"
        )
    if counts.min() < min_per_client:
        small = ids[counts < min_per_client].tolist()
        raise ConfigurationError(
            f"natural clients {small} hold fewer than min_per_client={min_per_client} examples; "
            "lower min_per_client, or give those owners more data (or fewer owners)"
        )
    return [np.flatnonzero(natural == client) for client in ids]
