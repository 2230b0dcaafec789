"""EWWA-FL's contribution computed on the client, so the element-wise softmax survives secure aggregation.

Client c keeps its own Adam-style moments, computes its contribution b_c and sends [e_c ⊙ x_c, e_c]
with e_c = exp(b_c - B). The secure sum gives N = sum r e x and D = sum r e; N ⊘ D is exactly the
softmax-weighted average of ``Ewwa(mode="paper")``, as the common factor exp(-B) cancels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.stages.base import BaseStage
from secfl.types import Bounds, Update

if TYPE_CHECKING:
    from secfl.types import Aggregator, Grouping, Stage

MAX_BOUND = 40.0  # e >= exp(-2 B) must stay a normal float32 (exp(-80) ~ 1.8e-35 > 1.2e-38)

VARIANTS = ("adam", "adagrad", "yogi")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_hyperparameters(owner: str, beta1: float, beta2: float, eps: float, scale: float, variant: str) -> None:
    """Raise ConfigurationError naming ``owner`` if an Adam-style hyper-parameter is out of range."""
    if not (_is_number(beta1) and 0 <= beta1 < 1):
        raise ConfigurationError(f"{owner}(beta1={beta1!r}): beta1 must be a number in [0, 1)")
    if not (_is_number(beta2) and 0 <= beta2 < 1):
        raise ConfigurationError(f"{owner}(beta2={beta2!r}): beta2 must be a number in [0, 1)")
    if not (_is_number(eps) and math.isfinite(eps) and eps > 0):
        raise ConfigurationError(f"{owner}(eps={eps!r}): eps must be a finite number > 0")
    if not (_is_number(scale) and math.isfinite(scale) and scale > 0):
        raise ConfigurationError(f"{owner}(scale={scale!r}): scale must be a finite number > 0")
    if variant not in VARIANTS:
        raise ConfigurationError(f"{owner}(variant={variant!r}): choose one of {list(VARIANTS)}")


def second_moment(variant: str, v: np.ndarray, g: np.ndarray, beta2: float) -> np.ndarray:
    """The new second moment (a new array): Adam EMA, Adagrad running sum, or Yogi's additive update."""
    g2 = g * g
    if variant == "adam":
        return beta2 * v + (1 - beta2) * g2
    if variant == "adagrad":
        return v + g2
    return v - (1 - beta2) * g2 * np.sign(v - g2)  # yogi


def adaptive_contribution(
    m: np.ndarray, v: np.ndarray, steps: int, g: np.ndarray, *,
    beta1: float, beta2: float, eps: float, scale: float, variant: str,
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """One client's step: update (m, v) with ``g`` and return ``(m, v, steps, b)``, new arrays.

    ``steps`` is the number of earlier updates of this state (0 for zero moments); with t = steps + 1,
    m̂ = m / (1 - beta1^t), v̂ = v / (1 - beta2^t) (Adam, Yogi) or v̂ = v (Adagrad, whose v is a plain
    sum), and b = scale * m̂ / (sqrt(v̂) + eps). In the first step every variant gives b = g / (|g| + eps).
    """
    t = steps + 1
    m = beta1 * m + (1 - beta1) * g
    v = second_moment(variant, v, g, beta2)
    m_hat = m / (1 - beta1**t)
    v_hat = v if variant == "adagrad" else v / (1 - beta2**t)
    b = scale * m_hat / (np.sqrt(np.maximum(v_hat, 0.0)) + eps)
    return m, v, t, b


class EwwaContribution(BaseStage):
    """Encode a delta x (length d) as the float32 vector [e ⊙ x, e] (length 2d).

    Args:
        bound: B > 0 (at most 40); the contribution b is clipped to [-B, B] and e = exp(b - B), so
            e ∈ [exp(-2B), 1]. This also caps how far one client can take over an element: its weight
            is at most e^(2B) / (e^(2B) + K - 1). With the default Adam moments |b| / scale is at most 1.01 in
            the first 5 rounds, 2.25 by round 100 and 7.28 ever (Cauchy-Schwarz), so B = 10 never clips;
            a smaller B (e.g. 3 to 5) gives finer fixed-point precision, as a quantization step 1/s costs up
            to (1/s) / e_min of relative accuracy in a ratio, with e_min >= exp(-2B).
        beta1, beta2, eps, scale, variant: as in ``Ewwa`` (defaults 0.9, 0.999, 1e-8, 1, "adam").

    For each client (keyed by ``update.client_id``): g = -x, the moments and step count are updated,
    b = clip(scale * m̂ / (sqrt(v̂) + eps), -B, B). In a deployment each client keeps its own moments;
    here this one object simulates them all, so one instance is one training run. A client updates its
    moments whenever it encodes (even if it drops out later), as a real client would.

    Inside a Pipeline the sum of a group is [sum r e x, sum r e, sum r] (the relative weight r appended
    last); ``decode`` returns [(sum r e x / sum r e) * sum r, sum r], so the pipeline's division by the
    last coordinate yields sum_c (r_c e_c / sum r e) ⊙ x_c, the softmax-weighted average with
    p_c ∝ r_c exp(b_c). Use it with ``Ewwa(mode="secure")`` and ``one_group`` (exact) or buckets, put it
    after L2Clip and before Quantize: ``check_pipeline`` refuses an aggregator that does not declare
    ``needs_stage == "ewwa"``, and the stage twice. Outside a pipeline a bare sum [N, D] (even length)
    decodes to N / D.

    Guarantee: decoded exactly (up to float32 rounding) when nothing is clipped and no quantization
    intervenes; |output| <= max(B_in, 1) per coordinate. The server learns the per-element total
    D = sum r e beyond FedAvg, and the uplink doubles. No DP event; its L2 bound is unknown (e adds up
    to sqrt(d)), so a noise stage after it cannot be calibrated and is rejected by the pipeline.

    References: Hu et al., EWWA-FL, ICDMW 2023 (the softmax weights); Bonawitz et al., Practical Secure
        Aggregation, CCS 2017 (the sums).
    """

    name: ClassVar[str] = "ewwa"
    output: ClassVar[str] = "real"

    def __init__(self, bound: float = 10.0, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 scale: float = 1.0, variant: str = "adam") -> None:
        if not (isinstance(bound, (int, float)) and not isinstance(bound, bool) and math.isfinite(bound)
                and 0 < bound <= MAX_BOUND):
            raise ConfigurationError(f"EwwaContribution(bound={bound!r}): bound must be a number in (0, {MAX_BOUND:g}]")
        check_hyperparameters("EwwaContribution", beta1, beta2, eps, scale, variant)
        self.bound = float(bound)
        self.beta1, self.beta2, self.eps, self.scale = float(beta1), float(beta2), float(eps), float(scale)
        self.variant = variant
        self.reset()

    def reset(self) -> None:
        """Forget every client's moments (start a new training run)."""
        self._clients: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}

    def check_pipeline(self, stages: Sequence[Stage], aggregator: Aggregator, grouping: Grouping | None = None) -> None:
        """Raise IncompatibleStagesError if the stage appears twice or ``aggregator`` does not expect its
        decode (the group's softmax-weighted average): only an aggregator declaring ``needs_stage == "ewwa"``
        (``Ewwa(mode="secure")``, alone or in a Chain) does."""
        if sum(isinstance(stage, EwwaContribution) for stage in stages) > 1:
            raise IncompatibleStagesError("EwwaContribution appears more than once in the stages; keep one")
        if aggregator.needs_stage != self.name:
            raise IncompatibleStagesError(
                f"EwwaContribution sends [e*x, e] and decodes each group into its softmax-weighted average, "
                f"which only Ewwa(mode='secure') expects, not {aggregator!r}; use aggregator "
                "{ kind = \"ewwa\", mode = \"secure\" } or drop the EwwaContribution stage"
            )

    def encode(self, update: Update, *, rng: np.random.Generator) -> Update:
        if update.values.dtype.kind != "f":
            raise ConfigurationError("EwwaContribution takes real values: put it before Quantize")
        x = update.values.astype(np.float64)
        cid = int(update.client_id)
        d = x.size
        m, v, steps = self._clients.get(cid, (np.zeros(d), np.zeros(d), 0))
        if m.size != d:
            raise ConfigurationError(
                f"EwwaContribution: client {cid} sent a vector of length {d} but its moments have length "
                f"{m.size}; one instance is one training run (create a new one or call reset())"
            )
        m, v, steps, b = adaptive_contribution(m, v, steps, -x, beta1=self.beta1, beta2=self.beta2,
                                               eps=self.eps, scale=self.scale, variant=self.variant)
        e = np.exp(np.clip(b, -self.bound, self.bound) - self.bound)
        self._clients[cid] = (m, v, steps)
        return update.replace(np.concatenate([e * x, e]).astype(np.float32))

    def decode(self, total: np.ndarray, *, count: int) -> np.ndarray:
        total = np.asarray(total, dtype=np.float64)
        if total.ndim != 1 or total.size < 2:
            raise ConfigurationError(f"EwwaContribution.decode expects [N, D(, weight)], got shape {total.shape}")
        weighted = total.size % 2 == 1  # a pipeline appends the total relative weight
        d = total.size // 2
        numerator, denominator = total[:d], total[d:2 * d]
        if not np.all(denominator > 0):
            bad = int(np.sum(~(denominator > 0)))
            raise ConfigurationError(
                f"EwwaContribution: the summed weight mass is <= 0 in {bad} coordinate(s) (e rounded to 0 by "
                "quantization); lower bound or raise the quantization scale"
            )
        ratio = numerator / denominator
        return np.append(ratio * total[-1], total[-1]) if weighted else ratio

    def value_bound(self, bound_in: Bounds) -> Bounds:
        return Bounds(linf=max(bound_in.linf, 1.0), l2=math.inf)  # |e x| <= |x| and 0 < e <= 1

    def measurements(self) -> dict[str, float]:
        return {f"{self.name}/bound": self.bound, f"{self.name}/uplink_factor": 2.0}

    def __repr__(self) -> str:
        return (f"EwwaContribution(bound={self.bound}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"scale={self.scale}, variant={self.variant!r})")
