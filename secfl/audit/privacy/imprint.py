"""Imprint ("trap weights") models and the bin-difference reconstruction of Fowl et al., "Robbing the Fed:
Directly Obtaining Private Data in Federated Learning with Modified Models" (ICLR 2022).

The server sends a crafted model: an **imprint** layer of k units whose rows all equal one measurement
vector ``w`` (here the mean of the input: brightness), with biases ``-t_i`` at k ascending quantiles ``t_i``
of that measurement on data the server holds, then a ReLU, then a **head** whose columns are all the same
vector ``v`` (no bias), which gives the logits. Unit i is active for an example x iff ``w.x > t_i``, so an
example whose measurement lies in bin ``[t_j, t_{j+1})`` activates units 0..j. Every active unit receives
the same backpropagated scalar ``s(x) = (softmax - onehot(y)) . v`` (the head's columns are equal), so
the gradients are ``dW_i = sum_{x: w.x > t_i} s(x) x`` and ``db_i = sum_{x: w.x > t_i} s(x)``, and the
difference of two neighbouring units isolates the examples of one bin:

    x = (dW_j - dW_{j+1}) / (db_j - db_{j+1})        (the top bin: dW_{k-1} / db_{k-1})

exactly when the bin holds one example. This holds on the SUM of many clients' updates, whatever each
update's scalar factor (learning rate, FedAvg weight, L2 clipping), so a secure sum does not stop it.

``v`` alternates +1, -1 over the classes: ``s(x) = p.v - v_y`` has |p.v| < 1 (p is never one-hot), so
``s(x)`` is never zero, and about +-1 for every label (p near uniform), which keeps every example's
signal the same size against quantization and noise. The imprint rows and biases are scaled by ``gain``
(small) so the logits stay near zero while the gradients keep the size of ``x``.

``dead_model`` has the same shapes but every imprint unit is dead (zero rows, bias -1): its update is
exactly zero on any input (the head has no bias), the model the server sends non-targets in the model
inconsistency attack (Pasquini, Francati, Ateniese, CCS 2022).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from secfl.audit.privacy.image_metrics import psnr
from secfl.exceptions import ConfigurationError

__all__ = ["ImprintNet", "imprint_model", "dead_model", "recover", "score", "DEFAULT_THRESHOLD", "Recovery"]

# 25 dB: a per-pixel RMS error of 5.6 % of the pixel range, a near copy of the digit (RECOGNISABLE_PSNR, 20 dB, is
# "recognisable but blurry"); the exact bins give > 40 dB, the no-information baselines on MNIST 10-13 dB.
DEFAULT_THRESHOLD = 25.0


class ImprintNet(nn.Module):
    """Flatten -> Linear(D, k) "imprint" -> ReLU -> Linear(k, C, bias=False) "head" (the logits)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, bins: int) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.imprint = nn.Linear(math.prod(self.input_shape), bins)
        self.head = nn.Linear(bins, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.imprint(x.flatten(1))))

    @property
    def bins(self) -> int:
        return self.imprint.out_features


def _check(input_shape: object, num_classes: object, bins: object) -> tuple[int, ...]:
    if (not isinstance(input_shape, tuple) or not input_shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape)):
        raise ConfigurationError(f"input_shape={input_shape!r}: pass a tuple of positive ints, e.g. (1, 28, 28)")
    for name, value, low in (("num_classes", num_classes, 2), ("bins", bins, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigurationError(f"{name}={value!r} is invalid; pass an int >= {low}")
    return input_shape


def _alternating(num_classes: int, bins: int) -> torch.Tensor:
    """The head's weight [C, k]: every column is (+1, -1, +1, ...)."""
    signs = torch.tensor([1.0 if c % 2 == 0 else -1.0 for c in range(num_classes)])
    return signs[:, None].expand(num_classes, bins).clone()


def imprint_model(input_shape: tuple[int, ...], num_classes: int, *, bins: int, public_x: np.ndarray,
                  gain: float = 1e-3) -> ImprintNet:
    """The crafted model, its bins at quantiles of the mean input over ``public_x`` (the server's data).

    Args:
        input_shape: one example's shape (images ``(C, H, W)`` or flat ``(d,)``), as the clients feed it.
        num_classes: the logits.
        bins: k imprint units; bin 0 starts below the least public measurement, so every example is in a bin.
        public_x: [m, *input_shape] examples the server holds (its public or test split), on the model's scale.
        gain: the scale of the imprint rows and biases (keeps the logits small; the gradients do not depend on it).

    Raises:
        ConfigurationError: bad shapes, too little public data for distinct quantiles, or a bad ``gain``.
    """
    shape = _check(input_shape, num_classes, bins)
    x = np.asarray(public_x, dtype=np.float64)
    if x.ndim < 1 or tuple(x.shape[1:]) != shape or len(x) < 2 or not np.all(np.isfinite(x)):
        raise ConfigurationError(f"public_x has shape {x.shape}; pass at least 2 finite examples of shape {shape}")
    if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
        raise ConfigurationError(f"gain={gain!r} must be a finite number > 0")
    measure = x.reshape(len(x), -1).mean(axis=1)
    thresholds = np.quantile(measure, np.arange(bins) / bins)
    spread = float(measure.max() - measure.min())
    thresholds[0] = measure.min() - max(spread, 1.0)  # bin 0 is open below: no example falls under every unit
    if bins > 1 and not np.all(np.diff(thresholds) > 0):
        raise ConfigurationError(f"{len(x)} public examples give tied quantiles for {bins} bins; pass more public "
                                 "data or fewer bins")
    model = ImprintNet(shape, num_classes, bins)
    dim = math.prod(shape)
    with torch.no_grad():
        model.imprint.weight.copy_(torch.full((bins, dim), gain / dim, dtype=torch.float32))
        model.imprint.bias.copy_(torch.tensor(-gain * thresholds, dtype=torch.float32))
        model.head.weight.copy_(_alternating(num_classes, bins))  # every column is (+1, -1, +1, ...)
    return model


def dead_model(input_shape: tuple[int, ...], num_classes: int, *, bins: int) -> ImprintNet:
    """The same shapes with every imprint unit dead: zero rows, bias -1, so the ReLU never fires and the update
    (imprint and head, which has no bias) is exactly zero on any data.

    Raises:
        ConfigurationError: bad shapes.
    """
    model = ImprintNet(_check(input_shape, num_classes, bins), num_classes, bins)
    with torch.no_grad():
        model.imprint.weight.zero_()
        model.imprint.bias.fill_(-1.0)
        model.head.weight.copy_(_alternating(num_classes, bins))
    return model


def recover(update_sum: np.ndarray, model: ImprintNet, *, min_weight: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Bin-difference reconstruction from the decoded SUM of the clients' updates of ``model`` (flattened in
    ``named_parameters`` order: imprint.weight, imprint.bias, head.weight; the pipeline's group mean times
    the group's total weight). A sum of model deltas (-lr x gradient) works as well as one of gradients.

    Args:
        min_weight: bins whose bias difference has |db| <= min_weight are skipped (0: only exactly empty bins).

    Returns:
        ``(inputs, bins)``: one reconstruction per non-empty bin ``[m, *input_shape]`` on the model's input
        scale, and the index of each one's bin ``[m]``.

    Raises:
        ConfigurationError: ``update_sum`` is not a finite vector of the model's size.
    """
    if not isinstance(model, ImprintNet):
        raise ConfigurationError(f"model is a {type(model).__name__}; pass the ImprintNet the clients trained")
    k, dim = model.bins, math.prod(model.input_shape)
    size = sum(p.numel() for p in model.parameters())
    u = np.asarray(update_sum, dtype=np.float64)
    if u.shape != (size,) or not np.all(np.isfinite(u)):
        raise ConfigurationError(f"update_sum has shape {u.shape}; pass the finite flat sum of {size} values")
    weights, biases = u[: k * dim].reshape(k, dim), u[k * dim: k * dim + k]
    dw = weights - np.vstack([weights[1:], np.zeros((1, dim))])
    db = biases - np.append(biases[1:], 0.0)
    keep = np.flatnonzero(np.abs(db) > min_weight)
    inputs = dw[keep] / db[keep, None]
    return inputs.reshape(len(keep), *model.input_shape), keep


@dataclass(frozen=True)
class Recovery:
    """``score``'s result: the per-example best PSNR and which candidate gave it, and the summary."""

    best_psnr: np.ndarray  # [n] each true example's best PSNR over the candidates (-inf without candidates)
    best: np.ndarray  # [n] the index of that candidate (-1 without candidates)
    summary: dict[str, float]


def score(recovered: np.ndarray, truth: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD,
          mean_image: np.ndarray | None = None) -> Recovery:
    """Match each true example to its best reconstruction; the fraction recovered at PSNR >= ``threshold``.

    Args:
        recovered: [m, *shape] candidates on the pixel scale (m may be 0), e.g. ``recover``'s clipped to [0, 1].
        truth: [n, *shape] the true examples on the pixel scale (range 1).
        mean_image: the no-information "mean image" guess (e.g. the public split's mean), [*shape]; default
            the mean of ``truth`` (generous to the baseline).

    Returns:
        A ``Recovery``: ``summary`` holds ``examples``, ``candidates``, ``recovered`` (count), ``fraction``,
        ``median_psnr`` (of the best matches), and the baselines ``fraction_mean_image`` / ``fraction_black``
        (what those guesses "recover" at the same threshold) with their mean PSNRs.

    Raises:
        ConfigurationError: shapes differ, no truth, non-finite values or a bad threshold.
    """
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
        raise ConfigurationError(f"threshold={threshold!r} must be a finite number of dB > 0")
    t = np.asarray(truth, dtype=np.float64)
    r = np.asarray(recovered, dtype=np.float64)
    if t.ndim < 2 or len(t) == 0 or r.shape[1:] != t.shape[1:] or not (np.all(np.isfinite(t))
                                                                     and np.all(np.isfinite(r))):
        raise ConfigurationError(f"recovered {r.shape} and truth {t.shape}: pass finite examples of one shape, "
                                 "at least one true one")
    flat_t = t.reshape(len(t), -1)
    flat_r = r.reshape(len(r), flat_t.shape[1])
    if len(r):
        mse = ((flat_t**2).sum(1)[:, None] + (flat_r**2).sum(1)[None] - 2 * flat_t @ flat_r.T) / flat_t.shape[1]
        best = np.argmin(mse, axis=1)
        low = np.maximum(mse[np.arange(len(t)), best], 0.0)
        with np.errstate(divide="ignore"):
            best_psnr = np.where(low > 1e-20, 10 * np.log10(1.0 / np.maximum(low, 1e-300)), np.inf)
    else:
        best, best_psnr = np.full(len(t), -1), np.full(len(t), -np.inf)
    guess = t.mean(axis=0) if mean_image is None else np.asarray(mean_image, dtype=np.float64)
    if guess.shape != t.shape[1:]:
        raise ConfigurationError(f"mean_image has shape {guess.shape}; pass one example of shape {t.shape[1:]}")
    as_images = t.reshape(len(t), 1, 1, -1)  # psnr wants [n, C, H, W]; any example shape flattens to one
    mean_psnr = psnr(np.broadcast_to(guess.reshape(1, 1, 1, -1), as_images.shape), as_images, reduction="none")
    black_psnr = psnr(np.zeros_like(as_images), as_images, reduction="none")
    hits = best_psnr >= threshold
    summary = {"examples": float(len(t)), "candidates": float(len(r)), "recovered": float(hits.sum()),
               "fraction": float(hits.mean()), "threshold_db": float(threshold),
               "median_psnr": float(np.median(np.minimum(best_psnr, 100.0))) if len(r) else float("nan"),
               "exact": float(np.sum(best_psnr > 40.0)),
               "fraction_mean_image": float(np.mean(mean_psnr >= threshold)),
               "fraction_black": float(np.mean(black_psnr >= threshold)),
               "psnr_mean_image": float(np.mean(mean_psnr)), "psnr_black": float(np.mean(black_psnr))}
    return Recovery(best_psnr=best_psnr, best=best, summary=summary)
