"""Image-reconstruction metrics for gradient-inversion attacks: PSNR, SSIM, best matching, no-information baselines.

Every function takes batches of images ``[n, C, H, W]`` on the pixel scale (``data_range`` is the span of a
valid pixel, 1.0 for images in [0, 1]); a single image ``[C, H, W]`` is treated as a batch of one.

- **PSNR** (peak signal-to-noise ratio): ``10 log10(data_range^2 / MSE)`` per image, in dB; ``inf`` for an
  exact copy. 20 dB is a recognisable but blurry image; 30 dB and more is close to pixel-perfect.
- **SSIM** (structural similarity, Wang, Bovik, Sheikh, Simoncelli, IEEE TIP 2004): the mean over local
  Gaussian windows (11x11, sigma 1.5, K1 = 0.01, K2 = 0.03) of
  ``(2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with ``C_k = (K_k L)^2``,
  computed per channel over the "valid" windows as in the authors' reference code (population
  covariances); 1 for identical images, about 0 for unrelated ones. An image smaller than 11 pixels in a
  dimension uses the largest odd window that fits (7x7 for 8x8 digits), still with sigma 1.5.
- **Baselines**: what an attacker with no information about the input reaches: the black image (all zero)
  and the mean image (e.g. the per-pixel mean of public data). A reconstruction is a leak only if it
  beats them; every PSNR table should print them beside the attack's number.
- **Label accuracy**: the share of true labels found, as multisets (order is not identifiable either).
- **Matching**: a batch gradient (or a secure sum of single-example updates) does not reveal which
  reconstruction is which input, so reconstructions are paired with the true images by the assignment that
  minimises the total MSE (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``).
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from secfl.exceptions import ConfigurationError

__all__ = ["Normalization", "psnr", "ssim", "baseline_psnr", "match_images", "gaussian_window",
           "evaluate_reconstruction", "RECOGNISABLE_PSNR"]

_K1, _K2, _SIGMA, _WINDOW = 0.01, 0.03, 1.5, 11
RECOGNISABLE_PSNR = 20.0  # dB: "a recognisable but blurry image" (above); a rule of thumb, not a measurement


@dataclass(frozen=True)
class Normalization:
    """Model inputs are ``(pixel - mean) / std`` with pixels in [0, 1], as ``secfl.fl.data`` standardises."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in (self.mean, self.std)) or self.std <= 0:
            raise ConfigurationError(
                f"Normalization(mean={self.mean!r}, std={self.std!r}) needs finite numbers and std > 0")

    @classmethod
    def infer(cls, x: np.ndarray) -> Normalization:
        """(mean, std) of standardised data whose raw pixels span exactly [0, 1] (true of MNIST and digits)."""
        low, high = float(np.min(x)), float(np.max(x))
        if not high > low:
            raise ConfigurationError("cannot infer the normalization of constant data; pass Normalization(mean, std)")
        return cls(mean=-low / (high - low), std=1.0 / (high - low))

    def to_pixels(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) * self.std + self.mean

    @property
    def box(self) -> tuple[float, float]:
        """The normalised values of pixels 0 and 1."""
        return -self.mean / self.std, (1.0 - self.mean) / self.std


def _batch(name: str, x: object) -> np.ndarray:
    """Return ``x`` as a finite float64 array [n, C, H, W]."""
    arr = np.asarray(x, dtype=np.float64) if isinstance(x, np.ndarray | list | tuple) else None
    if arr is None:
        raise ConfigurationError(f"{name} is a {type(x).__name__}; pass a numpy array [n, C, H, W] or [C, H, W]")
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.size == 0:
        raise ConfigurationError(f"{name} has shape {arr.shape}; pass non-empty images [n, C, H, W] or [C, H, W]")
    if not np.all(np.isfinite(arr)):
        raise ConfigurationError(f"{name} contains NaN or infinite pixels")
    return arr


def _pair(x: object, ref: object, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = _batch("x", x), _batch("ref", ref)
    if a.shape != b.shape:
        raise ConfigurationError(f"x has shape {a.shape} but ref has {b.shape}; compare images of equal shape")
    if isinstance(data_range, bool) or not isinstance(data_range, int | float) or not (
            math.isfinite(data_range) and data_range > 0):
        raise ConfigurationError(f"data_range={data_range!r} is invalid; pass a finite number > 0, e.g. 1.0")
    return a, b


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray | float:
    if reduction == "mean":
        return float(values.mean())
    if reduction == "none":
        return values
    raise ConfigurationError(f"reduction={reduction!r} is unknown; choose 'mean' or 'none'")


def psnr(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0, *, reduction: str = "mean") -> np.ndarray | float:
    """Peak signal-to-noise ratio in dB of each image of ``x`` against the same-index image of ``ref``.

    Args:
        x, ref: images ``[n, C, H, W]`` (or ``[C, H, W]``) on the pixel scale.
        data_range: the span of a valid pixel (1.0 for [0, 1]).
        reduction: ``"mean"`` (a float: the mean of the per-image PSNRs) or ``"none"`` (an array [n]).

    Returns:
        PSNR per image, ``inf`` where the images are equal.

    Raises:
        ConfigurationError: shapes differ or are not images, non-finite pixels, or a bad ``data_range``.
    """
    a, b = _pair(x, ref, data_range)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        values = np.where(mse > 0, 10.0 * np.log10(data_range**2 / np.maximum(mse, 1e-300)), np.inf)
    return _reduce(values, reduction)


def gaussian_window(size: int = _WINDOW, sigma: float = _SIGMA) -> np.ndarray:
    """The normalised 2-D Gaussian window ``[size, size]`` of SSIM."""
    axis = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(axis**2) / (2 * sigma**2))
    window = np.outer(g, g)
    return window / window.sum()


def ssim(x: np.ndarray, ref: np.ndarray, data_range: float = 1.0, *, reduction: str = "mean") -> np.ndarray | float:
    """Structural similarity of each image of ``x`` against the same-index image of ``ref`` (mean over channels).

    Args / Returns / Raises: as ``psnr``; values lie in [-1, 1].
    """
    a, b = _pair(x, ref, data_range)
    size = min(_WINDOW, a.shape[2] - (1 - a.shape[2] % 2), a.shape[3] - (1 - a.shape[3] % 2))
    window = gaussian_window(size)
    axes = (-2, -1)

    def blur(img: np.ndarray) -> np.ndarray:  # "valid" filtering: [n, C, H - size + 1, W - size + 1]
        return np.einsum("ncijkl,kl->ncij", np.lib.stride_tricks.sliding_window_view(img, (size, size), axis=axes),
                         window)

    c1, c2 = (_K1 * data_range) ** 2, (_K2 * data_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return _reduce(ssim_map.reshape(len(a), -1).mean(axis=1), reduction)


def baseline_psnr(ref: np.ndarray, kind: str = "black", *, mean_image: np.ndarray | None = None,
                  data_range: float = 1.0) -> float:
    """PSNR (mean over ``ref``) of a no-information guess: ``"black"`` (all zero) or ``"mean"`` (``mean_image``).

    Args:
        ref: the true images ``[n, C, H, W]``.
        kind: ``"black"`` or ``"mean"``.
        mean_image: for ``"mean"``: one image ``[C, H, W]`` (e.g. the per-pixel mean of public data) or a scalar.

    Raises:
        ConfigurationError: an unknown kind, ``"mean"`` without ``mean_image``, or a shape mismatch.
    """
    b = _batch("ref", ref)
    if kind == "black":
        guess = np.zeros_like(b)
    elif kind == "mean":
        if mean_image is None:
            raise ConfigurationError("baseline kind='mean' needs mean_image=[C, H, W] (or a scalar pixel value)")
        m = np.asarray(mean_image, dtype=np.float64)
        if m.ndim not in (0, 3) or (m.ndim == 3 and m.shape != b.shape[1:]):
            raise ConfigurationError(f"mean_image has shape {m.shape}; pass a scalar or one image {b.shape[1:]}")
        guess = np.broadcast_to(m, b.shape)
    else:
        raise ConfigurationError(f"baseline kind={kind!r} is unknown; choose 'black' or 'mean'")
    return float(psnr(guess, b, data_range))


def match_images(x: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairing of reconstructions ``x`` [k, ...] with true images ``ref`` [n, ...] of least total MSE.

    Returns:
        ``(rows, cols)``: index arrays of length ``min(k, n)``; ``x[rows[i]]`` is paired with ``ref[cols[i]]``.
    """
    a, b = _batch("x", x), _batch("ref", ref)
    if a.shape[1:] != b.shape[1:]:
        raise ConfigurationError(f"x images have shape {a.shape[1:]} but ref images {b.shape[1:]}")
    cost = ((a[:, None] - b[None]) ** 2).reshape(len(a), len(b), -1).mean(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return rows, cols


def evaluate_reconstruction(result, true_x: np.ndarray, true_y: np.ndarray, *,
                            normalization: Normalization | None = None,
                            mean_image: np.ndarray | None = None) -> dict[str, float]:
    """Score an ``inversion.InversionResult`` (anything with ``pixels``, ``labels``, ``normalization``).

    Args:
        true_x: the true inputs [n, C, H, W], normalised; true_y: their labels [n].
        normalization: brings ``true_x`` to pixels (default: the result's).
        mean_image: the "mean" baseline on the pixel scale, [C, H, W] or a scalar (default: the gray image of
            the normalisation mean, i.e. normalised zero).

    Returns:
        ``psnr`` and ``ssim`` (means over the best-matched pairs), ``label_accuracy``, ``psnr_black``,
        ``psnr_mean`` (the baselines on the same true images) and ``matched`` (pairs scored).
    """
    norm = normalization or result.normalization
    truth = np.clip(norm.to_pixels(np.asarray(true_x)), 0.0, 1.0)
    true_y = np.asarray(true_y).reshape(-1)
    if truth.ndim != 4 or truth.shape[1:] != result.pixels.shape[1:] or len(true_y) != len(truth):
        raise ConfigurationError(f"true_x {truth.shape} / true_y {true_y.shape} do not match reconstructions of "
                                 f"shape {result.pixels.shape}; pass images [n, C, H, W] and n labels")
    rows, cols = match_images(result.pixels, truth)
    recon, ref = np.asarray(result.pixels, dtype=np.float64)[rows], truth[cols]
    hits = sum((Counter(np.asarray(result.labels).tolist()) & Counter(true_y.tolist())).values())
    return {"psnr": psnr(recon, ref), "ssim": ssim(recon, ref), "label_accuracy": hits / len(true_y),
            "psnr_black": baseline_psnr(truth, "black"),
            "psnr_mean": baseline_psnr(truth, "mean", mean_image=norm.mean if mean_image is None else mean_image),
            "matched": float(len(rows))}
