"""Bridge inversion: what FedAgg's edges and cloud rebuild from the latent codes devices upload.

Threat model: an honest-but-curious edge or cloud server, or a curious device (each round its edge sends it a
bridge set drawn from the decoded codes of all the edge's devices: its siblings' images and labels; it holds
the same decoder). Under ``[fedagg] bridge = "latent"`` or
``"latent_dp"`` every device uploads, once, the codes of ``codes_per_device`` of its private training examples
with their labels (``FedAggRounds.codes``). The server trained the shared autoencoder itself on the public
split, so it holds the decoder, the public split and the ``latent_dp`` parameters (``code_clip``,
``code_noise``). It knows which code is which, so each reconstruction is scored against its own example (no
matching). Attacks:

- ``decoded``: the public decoder on each code as received.
- ``denoised`` (``latent_dp`` only): the decoder on the linear MMSE estimate of the clipped code from the
  noisy one, the prior being the mean ``mu`` and covariance ``S`` of the public split's clipped codes:
  ``mu + S (S + s^2 I)^-1 (c - mu)`` with ``s = code_noise * code_clip``. Strong noise takes it to the decoded
  mean code, weak noise to ``decoded``.

The better of the two (mean PSNR) is the headline. Per example: PSNR, SSIM, whether PSNR reaches
``RECOGNISABLE_PSNR`` and whether it beats the label-only guess. No-information baselines on the same
examples: the black image and the public split's mean image; label only: the public split's mean image of
the label the device released (what the label alone tells). ``public`` and ``synthetic`` bridges send no
client example: there is nothing to invert, and the result says so instead of giving a number.

Guarantee: none; an attack. Its PSNR measures what leaks, it bounds nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from secfl.audit.privacy.image_metrics import RECOGNISABLE_PSNR, Normalization, baseline_psnr, psnr, ssim
from secfl.audit.privacy.membership import loss_threshold_scores, roc_metrics
from secfl.exceptions import ConfigurationError
from secfl.hooks import RoundContext, RoundHook
from secfl.methods.fedagg.rounds import LATENT, FedAggRounds

__all__ = ["BridgeRecorder", "audit_bridges", "invert_bridges", "lmmse_codes", "NOTHING_SENT"]

NOTHING_SENT = {
    "public": "bridge = \"public\": the bridges are the server's public split; devices send only logits on them, "
              "no client example leaves a device",
    "synthetic": "bridge = \"synthetic\": the bridges are decoded from codes drawn from a Gaussian fitted to the "
                 "public split's codes; devices send only logits on them, no client example leaves a device",
}
_PNG_EXAMPLES = 16  # examples kept for the PNG, spread over the devices


class BridgeRecorder(RoundHook):
    """Keeps FedAgg's server side (its ``FedAggRounds`` hook), the dataset and the shards after round 1."""

    def __init__(self) -> None:
        self.rounds: FedAggRounds | None = None
        self.data: Any = None
        self.shards: list[np.ndarray] | None = None

    def after_sum(self, ctx: RoundContext) -> None:
        if self.data is None:
            self.rounds = next((h for h in ctx.hooks if isinstance(h, FedAggRounds)), None)
            self.data, self.shards = ctx.data, ctx.shards


def lmmse_codes(received: np.ndarray, prior: np.ndarray, noise_std: float) -> np.ndarray:
    """The linear MMSE estimates of codes from ``received`` = code + N(0, noise_std^2 I), under the mean and
    covariance of ``prior`` (codes ``[n, ...]``, flattened per code); same shape as ``received``.

    Raises:
        ConfigurationError: fewer than 2 prior codes, shapes that differ, or a negative ``noise_std``.
    """
    flat, known = received.reshape(len(received), -1).astype(np.float64), prior.reshape(len(prior), -1)
    if len(known) < 2 or known.shape[1] != flat.shape[1] or not noise_std >= 0:
        raise ConfigurationError(f"lmmse_codes needs >= 2 prior codes of the received codes' size and noise_std >= 0, "
                                 f"got prior {prior.shape}, received {received.shape}, noise_std {noise_std}")
    mu = known.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(known, rowvar=False))
    values = np.maximum(values, 0.0)
    gain = (vectors * (values / (values + noise_std**2 + 1e-12))) @ vectors.T  # S (S + s^2 I)^-1, symmetric
    return (mu + (flat - mu) @ gain).reshape(received.shape).astype(np.float32)


def _clip(codes: np.ndarray, bound: float) -> np.ndarray:
    flat = codes.reshape(len(codes), -1).astype(np.float64)
    norms = np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
    return (flat * np.minimum(1.0, bound / norms)).reshape(codes.shape)


def _scores(recon: np.ndarray, truth: np.ndarray, label_only_psnr: np.ndarray) -> dict[str, float]:
    values = psnr(recon, truth, reduction="none")
    return {"psnr": float(values.mean()), "ssim": float(ssim(recon, truth)),
            "recognisable": float(np.mean(values >= RECOGNISABLE_PSNR)),
            "beats_label_only": float(np.mean(values > label_only_psnr))}


def invert_bridges(rounds: FedAggRounds, data: Any, shards: list[np.ndarray]
                   ) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """Decode every released code and score it against its private example.

    Returns:
        The metrics (see the module doc); for ``_PNG_EXAMPLES`` examples spread over the devices, the arrays
        ``truth``, ``reconstruction`` (pixels in [0, 1]), ``true_labels``, ``released_labels``, ``devices``;
        and the indices in ``data.x_train`` of all the released examples.

    Raises:
        ConfigurationError: the bridges are not latent, no code was released, or the codes do not record
            which examples they encode (restored from a checkpoint).
    """
    o = rounds.options
    if o.bridge not in LATENT or not rounds.codes or rounds.autoencoder is None:
        raise ConfigurationError(f"bridge = {o.bridge!r} released no latent codes to invert")
    if any(c.index is None for c in rounds.codes):
        raise ConfigurationError("the codes were restored from a checkpoint and do not record which examples they "
                                 "encode; audit a fresh run")
    index = np.concatenate([shards[d][c.index] for d, c in enumerate(rounds.codes)])
    devices = np.concatenate([np.full(len(c.y), d) for d, c in enumerate(rounds.codes)])
    codes = np.concatenate([c.codes for c in rounds.codes])
    released = np.concatenate([c.y for c in rounds.codes]).astype(np.int64)
    norm = Normalization.infer(data.x_train)

    def pixels(x: np.ndarray) -> np.ndarray:
        return np.clip(norm.to_pixels(x), 0.0, 1.0)

    truth, true_y = pixels(data.x_train[index]), data.y_train[index].astype(np.int64)
    public = pixels(data.x_public)
    mean_image = public.mean(axis=0)
    class_means = {int(c): public[data.y_public == c].mean(axis=0) for c in np.unique(data.y_public)}
    label_guess = np.stack([class_means.get(int(c), mean_image) for c in released])
    label_only = psnr(label_guess, truth, reduction="none")
    attacks = {"decoded": pixels(rounds.autoencoder.decode(codes))}
    if o.bridge == "latent_dp":
        prior = _clip(rounds.autoencoder.encode(data.x_public), o.code_clip)
        denoised = lmmse_codes(codes, prior, o.code_noise * o.code_clip)
        attacks["denoised"] = pixels(rounds.autoencoder.decode(denoised))
    scored = {name: _scores(recon, truth, label_only) for name, recon in attacks.items()}
    best = max(scored, key=lambda name: scored[name]["psnr"])
    result: dict[str, Any] = {
        "bridge": o.bridge, "devices": len(rounds.codes), "examples": int(len(index)), "attack": best,
        **scored[best], "recognisable_psnr": RECOGNISABLE_PSNR,
        "label_accuracy": float(np.mean(released == true_y)),
        "psnr_black": baseline_psnr(truth, "black"), "psnr_mean": baseline_psnr(truth, "mean", mean_image=mean_image),
        "psnr_label_only": float(label_only.mean()),
        "ssim_mean": float(ssim(np.broadcast_to(mean_image, truth.shape), truth)),
        "ssim_label_only": float(ssim(label_guess, truth)), "attacks": scored}
    if o.bridge == "latent_dp":
        result.update(code_clip=o.code_clip, code_noise=o.code_noise, label_epsilon=o.label_epsilon,
                      epsilon_per_example=rounds.example_epsilon)
    shown = np.unique(np.linspace(0, len(index) - 1, min(_PNG_EXAMPLES, len(index))).round().astype(int))
    arrays = {"truth": truth[shown], "reconstruction": attacks[best][shown], "true_labels": true_y[shown],
              "released_labels": released[shown], "devices": devices[shown]}
    return result, arrays, index


def _released_membership(model: torch.nn.Module, data: Any, index: np.ndarray, examples: int,
                         seed: int) -> dict[str, Any]:
    """Loss-threshold membership on the final cloud model: the released examples (whose decoded copies the
    edges and cloud distilled on) against test examples."""
    rng = np.random.default_rng([seed, 17])
    n = min(examples, len(index), len(data.y_test))
    if n < 2:
        return {"skipped": f"only {n} released/test examples"}
    members, tests = rng.choice(index, size=n, replace=False), rng.choice(len(data.y_test), size=n, replace=False)
    x = np.concatenate([data.x_train[members], data.x_test[tests]])
    y = np.concatenate([data.y_train[members], data.y_test[tests]])
    return roc_metrics(loss_threshold_scores(model, x, y), np.r_[np.ones(n, bool), np.zeros(n, bool)])


def audit_bridges(recorder: BridgeRecorder, model: torch.nn.Module | None, out: Path, *, mia_examples: int,
                  seed: int) -> dict[str, Any]:
    """The bridge inversion of one FedAgg run (``{"nothing_to_invert": reason}`` for public and synthetic
    bridges, ``{"skipped": reason}`` when no round ran); writes ``<out>/bridges.npz`` for the PNG."""
    rounds = recorder.rounds
    if rounds is None:
        return {"skipped": "no FedAgg round ran"}
    bridge = rounds.options.bridge
    if bridge in NOTHING_SENT:
        return {"bridge": bridge, "nothing_to_invert": NOTHING_SENT[bridge]}
    try:
        result, arrays, index = invert_bridges(rounds, recorder.data, recorder.shards)
    except ConfigurationError as exc:
        return {"bridge": bridge, "skipped": str(exc)}
    if model is not None:
        result["released_membership"] = _released_membership(model, recorder.data, index, mia_examples, seed)
    np.savez_compressed(out / "bridges.npz", **arrays)
    return result
