"""FLTrust: trust-weighted mean of updates rescaled to the norm of the server's own update."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError

_TINY_NORM = 1e-150  # below this a row's squared entries may have underflowed


def _checked(reference: np.ndarray, where: str) -> np.ndarray:
    """A read-only float64 copy of ``reference``, or ConfigurationError if it is not a finite vector [d]."""
    reference = np.array(reference, dtype=np.float64)  # a private copy
    if reference.ndim != 1 or reference.shape[0] == 0 or not np.all(np.isfinite(reference)):
        raise ConfigurationError(f"{where}: must be a finite vector of shape [d], got shape {reference.shape}")
    reference.setflags(write=False)
    return reference


class FLTrust(BaseAggregator):
    """Σ_i TS_i · (||g0|| / ||x_i||) x_i / Σ_i TS_i, with TS_i = ReLU(cos(x_i, g0)).

    g0 is the server's reference update, computed on its small clean root dataset each round; pass it
    at call time, ``rule(vectors, reference=g0)`` (a Pipeline forwards ``run_round(..., reference=g0)``),
    or fix it through the constructor or ``with_reference(g0)``, which returns a new configured
    instance (the rule itself is stateless). ``needs_reference`` is True exactly when no reference is
    fixed; giving one at call time to an instance with a fixed one is an error (which would win is
    ambiguous). Every client update is rescaled to ||g0|| before averaging.
    Conventions pinned here: a zero row, or a zero g0, has trust 0 (the cosine is undefined; the
    original code reaches the same value through a +1e-9 in its denominators); when every trust
    score is 0 the output is the zero vector (no update this round). Weights are validated but
    ignored: the trust scores replace them, as in the paper.

    Args:
        reference: g0, shape [d], finite; it is copied, so later changes to the caller's array
            have no effect. Calling the rule without one (here or at call time) raises ConfigurationError.

    Guarantee: the output is a convex combination of vectors of norm ||g0||, so ||out|| <= ||g0||
        whatever the number of malicious clients; an update at an angle >= 90° from g0 (e.g. a
        flipped update) gets trust 0 and no influence. Under the paper's assumptions (strongly
        convex, smooth loss; root data representative) the learnt model stays within a bounded
        distance of the optimum for any number of malicious clients (Cao et al. 2021).

    References: Cao, Fang, Liu, Gong, FLTrust: Byzantine-robust Federated Learning via Trust
        Bootstrapping, NDSS 2021.
    """

    name: ClassVar[str] = "fltrust"
    min_inputs: int = 1

    def __init__(self, reference: np.ndarray | None = None, root_size: int = 100) -> None:
        if isinstance(root_size, bool) or not isinstance(root_size, int) or root_size < 1:
            raise ConfigurationError(f"FLTrust(root_size={root_size!r}): must be an int >= 1")
        self.root_size = root_size  # the engine's root dataset: this many training examples held by the server
        self.reference_size = root_size
        self.reference = None if reference is None else _checked(reference, "FLTrust(reference=...)")

    @property
    def needs_reference(self) -> bool:
        """True if each call needs ``reference=g0`` (no reference was fixed at construction)."""
        return self.reference is None

    def with_reference(self, reference: np.ndarray) -> FLTrust:
        """A new FLTrust using ``reference`` as the server update g0 (this instance is unchanged)."""
        if reference is None:
            raise ConfigurationError("FLTrust.with_reference(None): pass the server's update g0 of shape [d]")
        return FLTrust(reference, self.root_size)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None,
                 reference: np.ndarray | None = None) -> np.ndarray:
        if reference is not None and self.reference is not None:
            raise ConfigurationError(
                f"{self!r} has a fixed reference update g0 and takes none per call; build FLTrust() without "
                "reference=... to pass g0 each round"
            )
        if reference is None and self.reference is None:
            raise ConfigurationError(
                "FLTrust has no server reference update g0: pass it each round (rule(vectors, reference=g0), "
                "Pipeline.run_round(..., reference=g0)) or build it with FLTrust(reference=g0)"
            )
        vectors, _ = check_inputs(self.name, self.min_inputs, vectors, weights)
        g0 = self.reference if reference is None else _checked(reference, "FLTrust(..., reference=...)")
        if vectors.shape[1] != g0.shape[0]:
            raise ConfigurationError(
                f"FLTrust reference has d={g0.shape[0]} but the updates have d={vectors.shape[1]}; "
                "compute g0 over the same flattened parameters"
            )
        n = vectors.shape[0]
        g0_scale = float(np.max(np.abs(g0)))
        if g0_scale == 0:
            return np.zeros(vectors.shape[1])
        unit0 = g0 / g0_scale  # max |entry| = 1: no overflow or underflow in the products below
        unit0_norm = float(np.linalg.norm(unit0))
        g0_norm = g0_scale * unit0_norm
        # Per row: ||x_i|| = scale_i * norms_i and x_i·g0 ∝ scale_i * dots_i (scale_i = 1 normally).
        scale = np.ones(n)
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        dots = vectors @ unit0
        extreme = ~(np.isfinite(norms) & np.isfinite(dots)) | (norms < _TINY_NORM)
        for i in np.flatnonzero(extreme):  # |x_ij| near the float64 limits: redo that row rescaled
            scale[i] = np.max(np.abs(vectors[i]))
            if scale[i] == 0:
                norms[i], dots[i], scale[i] = 0.0, 0.0, 1.0
                continue
            row = vectors[i] / scale[i]
            norms[i], dots[i] = np.linalg.norm(row), row @ unit0
        nonzero = norms > 0
        safe_norms = np.where(nonzero, norms, 1.0)
        trust = np.where(nonzero, np.maximum(dots / (safe_norms * unit0_norm), 0.0), 0.0)
        total = trust.sum()
        if total <= 0:
            return np.zeros(vectors.shape[1])
        coefficients = trust * (g0_norm / safe_norms) / scale / total
        return coefficients @ vectors

    def __repr__(self) -> str:
        if self.reference is None:
            return "FLTrust(reference=None)"
        return f"FLTrust(reference=<vector d={self.reference.shape[0]}, norm={np.linalg.norm(self.reference):.6g}>)"
