"""Membership inference against a released model: loss threshold, offline LiRA, ROC metrics and DP bounds.

Threat model: black-box access to the released (final, global) model's outputs. The attacker can query the
model's logits on any input, knows the architecture and training recipe well enough to train shadow models,
and can sample from the data distribution (a pool of examples disjoint from, or overlapping with, the
target's training set). It tries to decide, for each candidate example ``(x, y)``, whether it was in the
model's training set. It sees nothing of the training run itself (no updates, no aggregates).

Attacks (a higher score means "more likely a member"):
- ``loss_threshold_scores``: score = -cross-entropy (Yeom, Giacomelli, Fredrikson, Jha, CSF 2018). Cheap;
  its AUC tracks the generalisation gap.
- ``lira_offline_scores``: offline Likelihood Ratio Attack (Carlini, Chien, Nasr, Song, Terzis, Tramer,
  S&P 2022, arXiv 2112.03570, Sec. VI-C). For each example, fit a Gaussian ``N(mu_out, sigma_out^2)`` to the
  logit-scaled confidence ``phi = log(p_y / (1 - p_y))`` of the true class over the OUT shadow models (those
  not trained on it) and score with the one-sided test ``Lambda = Pr[Z <= phi_target]``, ``Z ~ N(mu_out,
  sigma_out^2)``. With few shadows (< 64 OUT models, as the paper suggests) one global variance is used.

Evaluation: ``roc_metrics`` gives AUC and TPR at 1% and 0.1% FPR; the low-FPR numbers are the ones that
matter (Carlini et al.). ``dp_tpr_bound`` / ``dp_auc_bound`` give what (epsilon, delta)-DP allows any
attack (hypothesis-testing view, Kairouz, Oh, Viswanath, ICML 2015), so a report can check that a measured
attack "stays within the bound DP implies". A low empirical AUC does not validate a claimed epsilon.

Guarantee: none; these are attacks. They measure what leaks, they bound nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy import stats
from sklearn import metrics
from torch.nn import functional

from secfl.exceptions import ConfigurationError
from secfl.training import local_train
from secfl.training.trainer import tensors
from secfl.fl.params import flatten, unflatten

__all__ = [
    "dp_auc_bound",
    "dp_tpr_bound",
    "lira_offline_scores",
    "logit_confidence",
    "loss_threshold_scores",
    "out_mask",
    "per_example_loss",
    "roc_metrics",
    "train_shadow_models",
]

# Fewer OUT models per example than this -> one pooled variance for all examples (Carlini et al. Sec. VI-C).
GLOBAL_VARIANCE_BELOW = 64


def _outputs(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[n, classes]`` (float64) and labels ``[n]`` in eval mode without gradients; mode restored."""
    inputs, targets = tensors(x, y)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = torch.cat([model(xb) for xb in inputs.split(batch_size)]).double()
    finally:
        model.train(was_training)
    if logits.ndim != 2 or int(targets.max()) >= logits.shape[1]:
        raise ConfigurationError(
            f"model gives logits of shape {tuple(logits.shape)} but labels go up to {int(targets.max())}; "
            "pass labels in [0, num_classes)"
        )
    return logits, targets


def per_example_loss(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cross-entropy of each example under ``model`` (eval mode, no gradients; model unchanged).

    Returns:
        float64 ``[n]``.

    Raises:
        ConfigurationError: Empty data, mismatched lengths, bad labels.
    """
    logits, targets = _outputs(model, x, y)
    return functional.cross_entropy(logits, targets, reduction="none").numpy()


def logit_confidence(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``phi = log(p_y / (1 - p_y))`` per example, computed stably as ``z_y - logsumexp(z_{-y})``.

    Returns:
        float64 ``[n]`` (finite even when ``p_y`` rounds to 1).
    """
    logits, targets = _outputs(model, x, y)
    true = logits.gather(1, targets[:, None]).squeeze(1)
    others = logits.scatter(1, targets[:, None], -math.inf)
    return (true - torch.logsumexp(others, dim=1)).numpy()


def loss_threshold_scores(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership score ``-loss`` (Yeom et al. 2018): thresholding it at ``-tau`` is "member if loss < tau"."""
    return -per_example_loss(model, x, y)


def lira_offline_scores(
    target_model: torch.nn.Module,
    shadow_models_out: Sequence[torch.nn.Module],
    x: np.ndarray,
    y: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    global_variance: bool | None = None,
) -> np.ndarray:
    """Offline LiRA scores (Carlini et al. S&P 2022): one-sided Gaussian test against the OUT models.

    For example j, ``mu_j`` is the mean of ``phi`` over the shadow models that are OUT for j and the score is
    ``log Phi((phi_target_j - mu_j) / sigma_j)``: the log of the paper's ``Lambda = 1 - Pr[Z > phi_target]``.
    The log keeps the order of ``Lambda`` but does not saturate at 1 for confident members (ties hurt the
    low-FPR end of the ROC).

    The variance: per-example (``ddof=1``) or one global variance pooled over examples (sum of squared
    deviations from each example's own mean over the sum of ``n_j - 1``). The paper's code uses the spread of
    all OUT values instead; pooling within examples does not count the differences between examples' means.

    Args:
        target_model: The released model.
        shadow_models_out: Shadow models of the same architecture.
        x: float inputs ``[n, ...]``; y: int labels ``[n]``.
        mask: bool ``[len(shadow_models_out), n]``, True where shadow k did NOT train on example j (see
            ``out_mask``). Default: every shadow is OUT for every example (shadows trained on disjoint data).
        global_variance: Force the global (True) or per-example (False) variance. Default: global when some
            example has fewer than ``GLOBAL_VARIANCE_BELOW`` OUT models.

    Returns:
        float64 ``[n]``, higher = more likely a member.

    Raises:
        ConfigurationError: No shadow models, a mask of the wrong shape, an example with no OUT model, too few
            OUT models to estimate a variance (each needs 2 when per-example; 2 for one example when global),
            or a zero variance.
    """
    if len(shadow_models_out) == 0:
        raise ConfigurationError("shadow_models_out is empty; pass at least 2 shadow models")
    phi_target = logit_confidence(target_model, x, y)
    phi = np.stack([logit_confidence(model, x, y) for model in shadow_models_out])  # [k, n]
    if mask is None:
        mask = np.ones(phi.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.shape != phi.shape or mask.dtype != bool:
        raise ConfigurationError(
            f"mask has shape {mask.shape} and dtype {mask.dtype}; pass a bool array [num_shadows, n] = {phi.shape}"
        )
    counts = mask.sum(axis=0)
    if counts.min() == 0:
        raise ConfigurationError(
            f"{int((counts == 0).sum())} example(s) have no OUT shadow model; train more shadows on random subsets"
        )
    mu = np.where(mask, phi, 0.0).sum(axis=0) / counts
    squares = np.where(mask, (phi - mu) ** 2, 0.0).sum(axis=0)
    if global_variance is None:
        global_variance = bool(counts.min() < GLOBAL_VARIANCE_BELOW)
    if global_variance:
        dof = (counts - 1).sum()
        if dof < 1:
            raise ConfigurationError("need at least 2 OUT shadow models for some example to estimate a variance")
        sigma = np.full(len(mu), math.sqrt(squares.sum() / dof))
    else:
        if counts.min() < 2:
            raise ConfigurationError(
                "per-example variance needs at least 2 OUT shadow models per example; pass global_variance=True"
            )
        sigma = np.sqrt(squares / (counts - 1))
    if not np.all(sigma > 0):
        raise ConfigurationError("the OUT shadow confidences have zero variance; shadows must differ (seeds, data)")
    return stats.norm.logcdf((phi_target - mu) / sigma)


def train_shadow_models(
    build: Callable[[int], torch.nn.Module],
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    count: int,
    train_size: int,
    *,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 32,
) -> tuple[list[torch.nn.Module], list[np.ndarray]]:
    """Train ``count`` shadow models, each on ``train_size`` examples drawn without replacement from the pool.

    Shadow k gets the model ``build(seed + k)``, indices ``default_rng(seed).choice`` (one generator for all,
    in order) and SGD via ``local_train(..., seed=seed + k)``. Deterministic for fixed arguments.

    Returns:
        ``(models, index_sets)``: the trained models and, per model, the sorted pool indices it trained on
        (``out_mask`` turns them into LiRA's OUT mask).

    Raises:
        ConfigurationError: count < 1, train_size outside [1, pool size], or bad data/hyper-parameters.
    """
    n = len(np.asarray(y_pool))
    checks = (("count", count, 1, None), ("train_size", train_size, 1, n), ("seed", seed, 0, None))
    for name, value, low, high in checks:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low or (
            high is not None and value > high
        ):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer {bound}")
    x_pool = np.asarray(x_pool)
    y_pool = np.asarray(y_pool)
    rng = np.random.default_rng(seed)
    models, index_sets = [], []
    for k in range(count):
        indices = np.sort(rng.choice(n, size=train_size, replace=False))
        model = build(seed + k)
        result = local_train(
            model, x_pool[indices], y_pool[indices], epochs=epochs, batch_size=batch_size, lr=lr, seed=seed + k
        )
        unflatten(model, flatten(model) + result.delta)
        model.eval()
        models.append(model)
        index_sets.append(indices)
    return models, index_sets


def out_mask(index_sets: Sequence[np.ndarray], example_indices: np.ndarray) -> np.ndarray:
    """bool ``[len(index_sets), n]``: True where shadow k did not train on pool example ``example_indices[j]``."""
    example_indices = np.asarray(example_indices)
    return np.stack([~np.isin(example_indices, np.asarray(s)) for s in index_sets])


def _check_scores(scores: np.ndarray, is_member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    is_member = np.asarray(is_member)
    if scores.ndim != 1 or is_member.shape != scores.shape or len(scores) == 0:
        raise ConfigurationError(
            f"scores has shape {scores.shape} and is_member has shape {is_member.shape}; pass two [n] arrays"
        )
    if scores.dtype.kind not in "iuf" or not np.all(np.isfinite(scores)):
        raise ConfigurationError("scores must be finite real numbers; replace NaN/inf (e.g. clip log-scores)")
    if is_member.dtype != bool:
        if is_member.dtype.kind not in "iu" or not np.isin(is_member, (0, 1)).all():
            raise ConfigurationError(f"is_member has dtype {is_member.dtype}; pass bools or 0/1 integers")
        is_member = is_member.astype(bool)
    if is_member.all() or not is_member.any():
        raise ConfigurationError("is_member holds a single class; pass both members and non-members")
    return scores.astype(np.float64), is_member


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float, negatives: int) -> float:
    """Max TPR over thresholds with FPR <= target; NaN when 1 / negatives > target (FPR not resolvable)."""
    if 1.0 / negatives > target:
        return math.nan
    return float(tpr[fpr <= target].max())


def roc_metrics(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    """AUC and TPR at 1% and 0.1% FPR of membership scores (higher = member).

    TPR at FPR ``t`` is the TPR of the largest-TPR (= lowest) threshold whose empirical FPR is <= t: a step
    function, no interpolation between ROC points (interpolating would credit a randomised threshold the
    attack did not commit to). When there are fewer than ``1 / t`` non-members, the only FPR <= t reachable is
    0, which does not measure FPR = t; that entry is then NaN (print it as "n/a"), not 0.0.

    Returns:
        ``{"auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "num_members", "num_non_members"}``.

    Raises:
        ConfigurationError: Shapes differ, non-finite scores, labels not boolean/0-1, or a single class.
    """
    scores, is_member = _check_scores(scores, is_member)
    fpr, tpr, _ = metrics.roc_curve(is_member, scores, drop_intermediate=False)
    negatives = int((~is_member).sum())
    return {
        "auc": float(metrics.roc_auc_score(is_member, scores)),
        "tpr_at_1pct_fpr": _tpr_at(fpr, tpr, 0.01, negatives),
        "tpr_at_01pct_fpr": _tpr_at(fpr, tpr, 0.001, negatives),
        "num_members": int(is_member.sum()),
        "num_non_members": negatives,
    }


def _check_dp(epsilon: float, delta: float) -> tuple[float, float]:
    for name, value, ok, req in (
        ("epsilon", epsilon, lambda v: v >= 0, ">= 0"),
        ("delta", delta, lambda v: 0 <= v <= 1, "in [0, 1]"),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
            raise ConfigurationError(f"{name}={value!r} is invalid; pass a finite number {req}")
    return float(epsilon), float(delta)


def _tpr_curve(e: float, delta: float, fpr: np.ndarray) -> np.ndarray:
    """Upper bound on TPR at each FPR under (log e, delta)-DP."""
    return np.minimum.reduce(
        [np.ones_like(fpr), e * fpr + delta, 1.0 - (1.0 - fpr - delta) / e]
    )


def dp_tpr_bound(epsilon: float, delta: float, fpr: float) -> float:
    """Max TPR any membership test can reach at ``fpr`` against an (epsilon, delta)-DP mechanism.

    ``min(1, e^eps * fpr + delta, 1 - e^-eps * (1 - fpr - delta))`` (Kairouz, Oh, Viswanath 2015).

    Raises:
        ConfigurationError: epsilon < 0 or non-finite, delta outside [0, 1], fpr outside [0, 1].
    """
    epsilon, delta = _check_dp(epsilon, delta)
    if isinstance(fpr, bool) or not isinstance(fpr, numbers.Real) or not 0 <= fpr <= 1:
        raise ConfigurationError(f"fpr={fpr!r} is invalid; pass a number in [0, 1]")
    e = math.exp(min(epsilon, 700.0))
    return float(_tpr_curve(e, delta, np.array([float(fpr)]))[0])


def dp_auc_bound(epsilon: float, delta: float) -> float:
    """Max membership AUC under (epsilon, delta)-DP: the integral over FPR in [0, 1] of ``dp_tpr_bound``.

    The bound is a minimum of three lines (concave, piecewise linear), so the trapezoid rule over its
    breakpoints is exact. ``(0, 0) -> 0.5``; with delta = 0 it equals ``e^eps / (1 + e^eps)``.

    Raises:
        ConfigurationError: epsilon < 0 or non-finite, delta outside [0, 1].
    """
    epsilon, delta = _check_dp(epsilon, delta)
    e = math.exp(min(epsilon, 700.0))
    # Lines a = e*x + delta, b = 1 - (1 - x - delta)/e, c = 1 cross at: a = c, b = c, a = b (parallel if e = 1).
    crossings = ((1.0 - delta) / e, 1.0 - delta, (1.0 - delta) / (e + 1.0))
    points = {0.0, 1.0} | {x for x in crossings if 0.0 < x < 1.0}
    grid = np.array(sorted(points))
    return float(np.trapezoid(_tpr_curve(e, delta, grid), grid))
