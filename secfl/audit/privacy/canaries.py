"""Canary clients for the one-run privacy audit (Steinke, Nasr, Jagielski NeurIPS'23; canary updates as in
Andrew et al. ICLR'24).

``m`` client slots of the scenario become canaries. Each is included independently with probability 1/2:
an included canary sends ``c_i = norm * u_i`` whenever it is sampled (``u_i`` uniform on the unit sphere of
the update space, nearly orthogonal to everything else in high dimension), an excluded one sends the zero
vector. For the mechanism the two worlds differ by exactly ``c_i`` in the sum of the rounds where the slot
is sampled: the add/remove pair of client-level DP-FedAvg (with the slot sampled as in either world), so
the accountant's epsilon for one client bounds how well anyone can tell them apart. The auditor's score
is ``s_i = <sum_t aggregate_t, u_i>``: everything the server released, projected on the canary's direction.

Threat model: the auditor is the defender. It knows which slots are canaries and which are included;
nothing here is secret, and the randomness is the audit's seed (reproducible), not the OS CSPRNG. The
pipeline's own noise stays what the scenario says (CSPRNG by default).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from secfl.exceptions import ConfigurationError

__all__ = ["Canaries"]


class Canaries(Mapping[int, np.ndarray]):
    """``m`` canary slots among ``num_clients``; as a mapping: slot id -> the vector that client sends.

    Vectors are made on demand from ``(seed, index)`` (``m * d`` floats would not fit for big models).

    Args:
        num_clients: the scenario's clients; num_canaries: m (at most num_clients - 1).
        dim: the update's length d; norm: the canary's L2 norm (use the clip norm: clipping leaves it whole).
        seed: picks the slots, the included set and the directions.
    """

    def __init__(self, *, num_clients: int, num_canaries: int, dim: int, norm: float, seed: int) -> None:
        for name, value, low in (("num_clients", num_clients, 2), ("num_canaries", num_canaries, 1),
                                 ("dim", dim, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer >= {low}")
        if num_canaries >= num_clients:
            raise ConfigurationError(f"num_canaries={num_canaries} leaves no ordinary client among {num_clients}; "
                                     "use fewer canaries or more clients")
        if isinstance(norm, bool) or not isinstance(norm, (int, float)) or not (np.isfinite(norm) and norm > 0):
            raise ConfigurationError(f"norm={norm!r} is invalid; pass a finite number > 0")
        rng = np.random.default_rng([seed, 11])
        self.slots = np.sort(rng.choice(num_clients, size=num_canaries, replace=False)).astype(np.int64)
        self.included = rng.random(num_canaries) < 0.5
        self.dim, self.norm, self.seed = dim, float(norm), seed
        self._index = {int(cid): i for i, cid in enumerate(self.slots)}

    def direction(self, i: int) -> np.ndarray:
        """u_i: canary ``i``'s unit direction (float64 [d])."""
        g = np.random.default_rng([self.seed, 12, i]).standard_normal(self.dim)
        return g / np.linalg.norm(g)

    def scores(self, released_sum: np.ndarray) -> np.ndarray:
        """``s_i = <released_sum, u_i>`` for every canary (float64 [m])."""
        total = np.asarray(released_sum, dtype=np.float64).reshape(-1)
        if total.shape != (self.dim,):
            raise ConfigurationError(f"released_sum has shape {total.shape}; expected ({self.dim},)")
        return np.array([float(total @ self.direction(i)) for i in range(len(self.slots))])

    def __getitem__(self, cid: int) -> np.ndarray:
        i = self._index[cid]  # KeyError for a non-canary, as a Mapping should
        return self.direction(i) * self.norm if self.included[i] else np.zeros(self.dim)

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)
