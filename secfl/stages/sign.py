"""Binarized updates: sign (signSGD), unbiased stochastic sign, and error-feedback sign (EF-SignSGD).

Each maps a client's update x (length d) to s * sign(.) with one scale s per client, so the update is one
bit per coordinate plus, unless the scale is public, one float. These are baselines for binarized
uplinks (FedBAT's B(m; alpha) is the stochastic mode with a fixed alpha).

Privacy note: a per-client scale (mean |x|, max |x| or ||p||_1 / d, the defaults) is a function of the
client's update: it leaks that update's magnitude, and since the clients' vectors then differ by more
than their signs the secure sum is no longer a sum of bits (``BitPack`` refuses them). With ``scale``
set, s is one public constant shared by every client: the update is exactly its sign bits, which
``BitPack(scale)`` can securely sum in a ring of ceil(log2(K + 1)) bits per coordinate.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

MODES = ("sign", "stochastic", "ef")
_SLACK = 1 + 2.0**-20  # float32 rounding of s may lift it by a relative 2^-24


def _sign(values: np.ndarray) -> np.ndarray:
    """+1 where values >= 0 (sign(0) = +1, so every coordinate is one bit), else -1 (float64)."""
    return np.where(values >= 0, 1.0, -1.0)


class SignBinarize(BaseStage):
    """Replace a real update x (length d) by s * b with b in {-1, +1}^d.

    Args:
        mode: ``"sign"``: b = sign(x), s = ``scale`` or mean |x| (signSGD; sign(0) = +1).
            ``"stochastic"``: b = +1 with probability (1 + x / s) / 2, else -1 (x / s clamped to
            [-1, 1]), s = ``scale`` or max |x|: unbiased, E[s b] = x, whenever |x| <= s (always for the
            per-client s; with a public ``scale`` values beyond it are clamped). Draws from the rng
            passed to ``encode`` (the experiment's per-client rng), never its own.
            ``"ef"``: error feedback (EF-SignSGD): p = x + e, out = s * sign(p) with s = ``scale`` or
            ||p||_1 / d, then e <- p - out (the residual keeps what the bits did not carry, so the
            sum of the outputs over rounds tracks the sum of the inputs: sum out = sum x - e).
        scale: a PUBLIC constant s > 0 used by every client (then the update is exactly its bits, as
            ``BitPack`` needs); None: a per-client scale as above, which leaks the update's magnitude
            (see the module docstring).

    EF state: each client keeps its own residual e; this one object simulates every client's memory,
    keyed by ``update.client_id`` (so one instance is one training run; ``reset()`` forgets it). A
    client updates its residual whenever it encodes, even if it drops out of the secure sum later, as a
    real client would.

    Guarantee: every coordinate of the output is exactly +s or -s (s = 0 only for a per-client scale
    of an all-zero update); |output| <= ``scale`` when it is given; otherwise <= the input's L-inf bound
    for "sign" and "stochastic" (mean |x| <= max |x|) and, for "sign", ||output||_2 = ||x||_1 / sqrt(d)
    <= ||x||_2. EF without a public scale has no a-priori bound (it depends on the residual). Decode
    is the identity; no DP event (sign vectors are not differentially private).

    References: Bernstein et al., signSGD: Compressed Optimisation for Non-Convex Problems, ICML 2018;
        Karimireddy et al., Error Feedback Fixes SignSGD and other Gradient Compression Schemes,
        ICML 2019; Li et al., FedBAT, ICML 2024 (stochastic binarization with a step size alpha).
    """

    name: ClassVar[str] = "sign"
    output: ClassVar[str] = "real"

    def __init__(self, mode: str = "sign", scale: float | None = None) -> None:
        if mode not in MODES:
            raise ConfigurationError(f"SignBinarize(mode={mode!r}): mode must be one of {list(MODES)}")
        if scale is not None and not (isinstance(scale, (int, float)) and not isinstance(scale, bool)
                                      and math.isfinite(scale) and scale > 0):
            raise ConfigurationError(f"SignBinarize(scale={scale!r}): scale must be a finite number > 0, or None")
        self.mode = mode
        self.scale = None if scale is None else float(scale)
        self.reset()

    @property
    def bits_per_coordinate(self) -> int:
        """Information per coordinate of the output: one bit (plus one scale float per client if private)."""
        return 1

    def reset(self) -> None:
        """Forget every client's error-feedback residual (start a new training run)."""
        self._residuals: dict[int, np.ndarray] = {}

    def residual(self, client_id: int) -> np.ndarray | None:
        """Client ``client_id``'s current EF residual (a copy), or None if it has none."""
        e = self._residuals.get(int(client_id))
        return None if e is None else e.copy()

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        if update.values.dtype.kind != "f":
            raise ConfigurationError("SignBinarize takes real values: put it before any ring stage (BitPack, Quantize)")
        x = update.values.astype(np.float64)
        if self.mode == "sign":
            s = self.scale if self.scale is not None else float(np.mean(np.abs(x))) if x.size else 0.0
            out = s * _sign(x)
        elif self.mode == "stochastic":
            s = self.scale if self.scale is not None else float(np.max(np.abs(x), initial=0.0))
            if s == 0.0:
                out = np.zeros_like(x)
            else:
                plus = rng.random(x.size) < (1.0 + np.clip(x / s, -1.0, 1.0)) / 2.0
                out = np.where(plus, s, -s)
        else:
            out = self._error_feedback(int(update.client_id), x)
        return update.replace(out.astype(np.float32))

    def _error_feedback(self, cid: int, x: np.ndarray) -> np.ndarray:
        e = self._residuals.get(cid)
        if e is None:
            e = np.zeros_like(x)
        elif e.size != x.size:
            raise ConfigurationError(
                f"SignBinarize(mode='ef'): client {cid} sent a vector of length {x.size} but its residual has "
                f"length {e.size}; one instance is one training run (create a new one or call reset())"
            )
        p = x + e
        s = self.scale if self.scale is not None else float(np.sum(np.abs(p))) / p.size if p.size else 0.0
        sent = (s * _sign(p)).astype(np.float32).astype(np.float64)  # what actually travels
        self._residuals[cid] = p - sent
        return sent

    def value_bound(self, bound_in: Bounds) -> Bounds:
        if self.scale is not None:
            return Bounds(linf=self.scale * _SLACK, l2=math.inf)  # sqrt(d) * scale; d is not known here
        if self.mode == "sign":
            return Bounds(linf=bound_in.linf * _SLACK, l2=bound_in.l2 * _SLACK)
        if self.mode == "stochastic":
            return Bounds(linf=bound_in.linf * _SLACK, l2=math.inf)
        return Bounds.UNBOUNDED  # EF: ||p||_1 / d grows with the residual

    def measurements(self) -> dict[str, float]:
        out = {f"{self.name}/bits_per_coordinate": float(self.bits_per_coordinate)}
        if self.scale is not None:
            out[f"{self.name}/scale"] = self.scale
        return out

    def __repr__(self) -> str:
        return f"SignBinarize(mode={self.mode!r}, scale={self.scale})"
