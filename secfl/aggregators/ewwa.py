"""EWWA-FL: element-wise weights aggregation with Adam-style per-element contributions.

Each (client, element) pair gets its own weight p_c,j >= 0 with sum_c p_c,j = 1, computed from the
client's pseudo-gradient g_c = w - w_c = -x_c (x_c is the client's delta, the secfl convention) through
Adam-like moments. The aggregate delta is sum_c p_c ⊙ x_c, an element-wise convex combination.

Three modes:

* ``"paper"`` (default): the paper's formulation (Fig. 2): per-client moments, softmax over clients.
* ``"code"``: what the official implementation does: one shared pair of moments updated over the
  clients in order, log-shift normalisation with a global minimum.
* ``"secure"``: the softmax of ``"paper"`` computed under secure aggregation: each client keeps its
  own moments and sends [e ⊙ x, e] through the secure sum (the ``EwwaContribution`` stage); the
  server only divides two sums. This module's aggregator then just averages the group results.

References: Hu, Ren, Hu, Deng, Xie, Element-Wise Weights Aggregation Method for Federated Learning
    (EWWA-FL), ICDM Workshops 2023; Kingma & Ba, Adam, ICLR 2015; Reddi et al., Adaptive Federated
    Optimization, ICLR 2021 (Adagrad/Yogi variants).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from secfl.aggregators.base import BaseAggregator, check_inputs
from secfl.exceptions import ConfigurationError, IncompatibleStagesError
from secfl.stages.ewwa import (VARIANTS, EwwaContribution, adaptive_contribution, check_hyperparameters,
                               second_moment)

if TYPE_CHECKING:
    from secfl.types import Aggregator, Grouping, Stage

__all__ = ["Ewwa", "MODES", "VARIANTS", "adaptive_contribution", "check_hyperparameters", "check_pairing"]

MODES = ("paper", "code", "secure")
LOG_FLOOR = 1e-8  # the official code's additive constant after the log-shift


class Ewwa(BaseAggregator):
    """EWWA-FL: out = sum_c p_c ⊙ x_c with element-wise weights p_c >= 0, sum_c p_c = 1 per element.

    Args:
        mode: ``"paper"``, ``"code"`` or ``"secure"`` (see below).
        beta1, beta2, eps: the Adam-style moment parameters (defaults 0.9, 0.999, 1e-8).
        scale: eta, the multiplier of the contribution (default 1).
        variant: second moment ``"adam"`` (v <- b2 v + (1-b2) g^2), ``"adagrad"`` (v <- v + g^2, no bias
            correction of v) or ``"yogi"`` (v <- v - (1-b2) g^2 sign(v - g^2), bias-corrected like Adam).

    The rows of ``vectors`` are clients' deltas x_c = w_c - w (use ``Individual`` grouping in the
    ``"paper"`` and ``"code"`` modes: a row must be one client). The pseudo-gradient is g_c = -x_c.

    ``"paper"`` (recommended; §2.2 of the paper): every client id has its own moments (m_c, v_c) and
    step count t_c, updated only in the rounds it takes part in (they go stale in between; a new id
    starts from zero moments). b_c = scale * m̂_c / (sqrt(v̂_c) + eps), p_c = softmax_c(b_c) per element
    (computed with the column maximum subtracted), out = sum_c p_c ⊙ x_c. Order-independent; identical
    clients get p_c = 1/K, so it reduces to the mean. With ``weights`` w_c, p_c ∝ w_c exp(b_c) (so
    identical clients give the weighted mean, like ``Mean``).

    ``"code"`` (fidelity with the official ``methods/EWWA.py``): one shared (m, v), updated by each row
    in the given order before that row's ĝ_k = s_r * m / (sqrt(v) + eps) is read, with
    s_r = scale * sqrt(1 - beta2^(r+1)) / (1 - beta1^(r+1)) and r the 0-based round (calls so far);
    c_min = min of every ĝ (one scalar), e_k = log(ĝ_k - c_min + 1) + 1e-8, p_k = e_k / sum_j e_j.
    The result depends on the order of the rows (identical clients get different weights) and ``ids``
    are ignored. ``variant`` changes only the v update; s_r is as in the code. With ``weights``,
    p_k ∝ w_k e_k (the official code has no weights).

    Sign asymmetry (both modes, by design of the method): an element where a client *decreased* the
    weight (x < 0, g > 0, b > 0) gets a larger weight than one where it increased it, so the aggregate
    leans toward negative deltas; it is not symmetric under x -> -x.

    ``"secure"``: the clients computed their contributions themselves with the ``EwwaContribution``
    stage (moments kept on the client) and the secure sum of [r e ⊙ x, r e, r] decoded into each group's
    softmax-weighted average sum_c (r_c e_c / sum r e) ⊙ x_c; this mode averages those group results
    like ``Mean`` (weights honoured; the hyper-parameters here are unused: the stage's govern). It is
    exact with ``OneGroup``; with buckets it is the weighted mean of per-bucket softmax averages;
    with ``Individual`` it is plain FedAvg (rejected by ``check_pipeline``). It needs that stage
    (``needs_stage`` is ``"ewwa"``): ``check_pipeline`` raises IncompatibleStagesError without it.

    State: the server-side moments live in this object, so one instance is one training run: create a
    new instance (or call ``reset()``) for another run. A change of the vector length is an error.
    ``last_ratios`` holds the [n, d] weights p of the last call (None in ``"secure"`` mode), e.g. as a
    detection signal for targeted take-over of elements.

    Guarantee: each coordinate of the output lies between the smallest and largest input in that
    coordinate. None against Byzantine inputs: a client can push its b up on chosen elements and
    take them over (p -> 1).

    References: Hu et al., EWWA-FL, ICDMW 2023.
    """

    name: ClassVar[str] = "ewwa"
    min_inputs: int = 1
    takes_ids: ClassVar[bool] = True  # paper mode keys moments by client id

    def __init__(self, mode: str = "paper", beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 scale: float = 1.0, variant: str = "adam") -> None:
        if mode not in MODES:
            raise ConfigurationError(f"Ewwa(mode={mode!r}): choose one of {list(MODES)}")
        check_hyperparameters("Ewwa", beta1, beta2, eps, scale, variant)
        self.mode = mode
        self.beta1, self.beta2, self.eps, self.scale = float(beta1), float(beta2), float(eps), float(scale)
        self.variant = variant
        self.reset()

    def reset(self) -> None:
        """Forget every moment and the round count (start a new training run)."""
        self.rounds = 0  # calls so far (r, 0-based, of the next call)
        self.dim: int | None = None
        self._clients: dict[Hashable, tuple[np.ndarray, np.ndarray, int]] = {}  # paper: id -> (m, v, steps)
        self._shared: tuple[np.ndarray, np.ndarray] | None = None  # code: (m, v)
        self.last_ratios: np.ndarray | None = None

    @property
    def needs_ids(self) -> bool:
        """True if the rows must be single clients identified by ``ids`` (paper mode)."""
        return self.mode == "paper"

    @property
    def needs_stage(self) -> str | None:
        """``"ewwa"`` in the secure mode: the rows must come from ``EwwaContribution``; None otherwise."""
        return EwwaContribution.name if self.mode == "secure" else None

    def check_pipeline(self, stages: Sequence[Stage], grouping: Grouping | None = None) -> None:
        """Raise IncompatibleStagesError if ``stages`` or ``grouping`` do not fit this mode.

        The secure mode averages group results that are only EWWA-weighted if ``EwwaContribution``
        produced them; with ``grouping`` (None: the stages only), ``"paper"``/``"code"`` need one client
        per row (``Individual``) and ``"secure"`` needs groups of several clients (with ``Individual``
        each softmax is over one client: plain FedAvg). The stage checks its side itself.
        """
        secure = self.mode == "secure"
        if secure and not any(isinstance(stage, EwwaContribution) for stage in stages):
            raise IncompatibleStagesError(
                "Ewwa(mode='secure') averages group results that the EwwaContribution stage must have weighted "
                "on the clients; add EwwaContribution(...) to the stages (before Quantize), or use "
                "Ewwa(mode='paper') without secure aggregation"
            )
        if grouping is None:
            return
        individual = grouping.name == "individual"
        if secure and individual:
            raise IncompatibleStagesError(
                "Ewwa(mode='secure') with Individual grouping takes each softmax over a single client, which is "
                "plain FedAvg; use one_group (exact) or buckets"
            )
        if not secure and not individual:
            raise IncompatibleStagesError(
                f"Ewwa(mode={self.mode!r}) keeps per-client state and needs one client per row, but {grouping!r} "
                "mixes clients; use Individual grouping, or Ewwa(mode='secure') with EwwaContribution"
            )

    def check_stages(self, stages: Sequence[Stage]) -> None:
        """Raise IncompatibleStagesError if ``stages`` do not pair with this mode (see ``check_pairing``)."""
        check_pairing(stages, self)

    def __call__(self, vectors: np.ndarray, *, weights: np.ndarray | None = None,
                 ids: Sequence[Hashable] | None = None) -> np.ndarray:
        vectors, weights = check_inputs(self.name, self.min_inputs, vectors, weights)
        n, d = vectors.shape
        if ids is None:
            ids = list(range(n))
        else:
            try:
                ids = list(ids)
                distinct = len(set(ids))
            except TypeError:
                raise ConfigurationError("Ewwa ids must be a sequence of hashable client ids") from None
            if len(ids) != n or distinct != n:
                raise ConfigurationError(f"Ewwa needs {n} distinct ids (one per row), got {len(ids)} "
                                         f"with {distinct} distinct")
        if self.mode == "secure":
            return vectors.mean(axis=0) if weights is None else (weights @ vectors) / weights.sum()
        if self.dim is not None and d != self.dim:
            raise ConfigurationError(
                f"Ewwa got vectors of length {d} but its state is for length {self.dim}; one instance is one "
                "training run: create a new Ewwa (or call reset())"
            )
        ratios = self._paper(vectors, weights, ids) if self.mode == "paper" else self._code(vectors, weights)
        self.dim, self.rounds, self.last_ratios = d, self.rounds + 1, ratios
        return np.einsum("nd,nd->d", ratios, vectors)

    def _paper(self, vectors: np.ndarray, weights: np.ndarray | None, ids: list[Hashable]) -> np.ndarray:
        d = vectors.shape[1]
        contributions, new_state = np.empty_like(vectors), {}
        for row, cid in enumerate(ids):
            m, v, steps = self._clients.get(cid, (np.zeros(d), np.zeros(d), 0))
            m, v, steps, b = adaptive_contribution(
                m, v, steps, -vectors[row], beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                scale=self.scale, variant=self.variant,
            )
            new_state[cid] = (m, v, steps)
            contributions[row] = b
        mass = np.exp(contributions - contributions.max(axis=0))
        if weights is not None:
            mass *= weights[:, None]
        self._clients.update(new_state)  # committed only once every row is computed
        return mass / mass.sum(axis=0)

    def _code(self, vectors: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        d, r = vectors.shape[1], self.rounds
        m, v = self._shared if self._shared is not None else (np.zeros(d), np.zeros(d))
        step = self.scale * math.sqrt(1 - self.beta2 ** (r + 1)) / (1 - self.beta1 ** (r + 1))
        g_hat = np.empty_like(vectors)
        for row in range(vectors.shape[0]):
            g = -vectors[row]
            m = self.beta1 * m + (1 - self.beta1) * g
            v = second_moment(self.variant, v, g, self.beta2)
            g_hat[row] = step * m / (np.sqrt(np.maximum(v, 0.0)) + self.eps)
        mass = np.log(g_hat - g_hat.min() + 1.0) + LOG_FLOOR
        if weights is not None:
            mass *= weights[:, None]
        self._shared = (m, v)
        return mass / mass.sum(axis=0)

    def __repr__(self) -> str:
        return (f"Ewwa(mode={self.mode!r}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"scale={self.scale}, variant={self.variant!r})")


def check_pairing(stages: Sequence[Stage], aggregator: Aggregator, grouping: Grouping | None = None) -> None:
    """Run the pairing checks a Pipeline runs: every stage's ``check_pipeline``, then the aggregator's.

    For EWWA: ``EwwaContribution`` and ``Ewwa(mode="secure")`` must come together (see
    ``Ewwa.check_pipeline`` and ``EwwaContribution.check_pipeline``); a no-op for other components.

    Raises:
        IncompatibleStagesError: the stage without the secure mode, the secure mode without the stage,
            the stage twice, or a grouping that does not fit the mode.
    """
    for stage in stages:
        stage.check_pipeline(stages, aggregator, grouping)
    aggregator.check_pipeline(stages, grouping)
