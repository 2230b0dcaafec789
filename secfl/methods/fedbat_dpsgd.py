"""FedBAT local training under sample-level DP-SGD (FedBAT: Li et al., ICML 2024; Opacus: Yousefpour et al., 2021).

Same algorithm as ``fedbat.fedbat_local_train`` (docs/methods/fedbat.md section 2), but every optimizer step is an
Opacus DP-SGD step: each example's gradient with respect to all trainable tensors (the updates m_l, the step-size
logits a_l, biases and other parameters) is clipped to C = ``max_grad_norm``, and N(0, (noise_multiplier * C)^2)
noise is added to the sum. Everything uploaded (the bits, alpha_l = clamp(mean|m_l| exp(rho a_l)), the fp32
deltas) is a function of the DP-SGD-trained tensors, so it is post-processing and the accountant's epsilon covers
it (docs/methods/fedbat.md section 5.2).

How the per-example gradients are computed: each Conv2d/Linear becomes a ``BatLinear``/``BatConv2d`` whose
parameters are ``m``, ``a`` (and ``bias``). Opacus has no grad sampler for them, so it computes their per-example
gradients with ``torch.func`` (vmap over examples of grad of the layer's functional call); this happens in both the
"functorch" and the "hooks" mode (hooks mode falls back to it for unregistered layers). The binarizer's uniforms u
are drawn once per step, outside vmap, and shared by every example of the batch, so each per-example gradient is
the exact (STE) gradient of that example's loss at the batch's binarized weight. The frozen W, u and alpha0 live
in a ``_Shared`` object that ``copy.deepcopy`` does not copy, because Opacus's functorch path runs the layer
through a deep copy made once (parameters moved to the meta device) and must still see this step's u.

Threat model: as in ``secfl.fl.dpsgd``, the noise comes from a *seeded* ``torch.Generator``, not a CSPRNG. Runs
are reproducible, but whoever knows or guesses the seed can regenerate and subtract the noise, so the reported
epsilon does not hold against them. Use this for utility and accounting experiments, not as a deployed
guarantee. The binarizer's own randomness is not counted as privacy.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError
from secfl.fl.client import _tensors
from secfl.fl.dpsgd import DpSgdConfig, _epsilon, start
from secfl.methods.fedbat import _STREAM_TAG, BINARIZED_MODULES, FedBatResult, _check_alphas, _check_clamp, _sample_bits

__all__ = ["BatConv2d", "BatLinear", "FedBatDpResult", "bat_model", "fedbat_dp_local_train"]


class _Binarize(torch.autograd.Function):
    """``fedbat._Binarize`` (same forward and gradients) in the form torch.func transforms (vmap, grad) accept."""

    generate_vmap_rule = True

    @staticmethod
    def forward(m: torch.Tensor, alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return alpha * (2 * _sample_bits(m / alpha, u) - 1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        m, alpha, _ = inputs
        ctx.save_for_backward(m, alpha, output)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        m, alpha, output = ctx.saved_tensors
        x = m / alpha
        c = torch.where(x > 1, 1.0, torch.where(x < -1, -1.0, torch.sign(output) - x))  # sign(B) = 2b - 1
        return g * (x.abs() <= 1).to(g.dtype), (g * c).sum().reshape(alpha.shape), None


class _Shared:
    """A layer's frozen weight, rho, clamp, alpha0 (None during warm-up) and this step's uniforms ``u``.

    Deep copies share it (``__deepcopy__`` returns self): Opacus's functorch copy of the layer must read the
    live u and alpha0. It holds no parameter or buffer, so Opacus's "no buffers" check passes."""

    def __init__(self, weight: torch.Tensor, rho: float, low: float, high: float) -> None:
        self.weight, self.rho, self.low, self.high = weight, rho, low, high
        self.alpha0: float | None = None
        self.warm: float | None = None  # mean|m| at the end of the warm-up
        self.u: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


class _BatLayer(torch.nn.Module):
    """Frozen W plus trainable update ``m`` (zeros) and step-size logit ``a`` (0); ``bias`` is kept.

    ``a`` has shape [1], not 0-d: torch.func's vmap of grad through exp/clamp of a 0-d tensor crashes on an
    empty batch (IndexError in select()), and Poisson sampling does produce empty batches."""

    def __init__(self, layer: torch.nn.Module, rho: float, low: float, high: float) -> None:
        super().__init__()
        weight = layer.weight.detach()
        self.m = torch.nn.Parameter(torch.zeros_like(weight))
        self.a = torch.nn.Parameter(torch.zeros(1, dtype=weight.dtype, device=weight.device))
        self.bias = layer.bias
        self.shared = _Shared(weight, rho, low, high)

    def alpha(self) -> torch.Tensor:
        """alpha = clamp(alpha0 exp(rho a), lo, hi); only valid once binarizing."""
        s = self.shared
        return torch.clamp(s.alpha0 * torch.exp(s.rho * self.a), s.low, s.high)

    def effective_weight(self) -> torch.Tensor:
        """W + m during warm-up, W + B(m; alpha) with the stored uniforms afterwards."""
        s = self.shared
        if s.alpha0 is None:
            return s.weight + self.m
        return s.weight + _Binarize.apply(self.m, self.alpha(), s.u)

    def start_binarizing(self, alpha0: float | None = None) -> None:
        """End of warm-up: fix alpha0 (default mean|m|, the lower clamp if 0)."""
        self.shared.warm = float(self.m.detach().abs().mean()) or self.shared.low
        self.shared.alpha0 = self.shared.warm if alpha0 is None else alpha0

    def draw(self, generator: torch.Generator) -> None:
        """Draw this step's uniforms u (one per weight, shared by all examples of the batch)."""
        self.shared.u = torch.rand(self.m.shape, generator=generator, dtype=self.m.dtype, device=self.m.device)


class BatLinear(_BatLayer):
    """A Linear layer trained the FedBAT way (see ``_BatLayer``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.effective_weight(), self.bias)


class BatConv2d(_BatLayer):
    """A Conv2d layer trained the FedBAT way (see ``_BatLayer``); keeps the convolution's settings."""

    def __init__(self, layer: torch.nn.Conv2d, rho: float, low: float, high: float) -> None:
        super().__init__(layer, rho, low, high)
        for key in ("stride", "padding", "dilation", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(self, key, getattr(layer, key))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.Conv2d._conv_forward(self, x, self.effective_weight(), self.bias)


def bat_model(
    model: torch.nn.Module, *, rho: float = 6.0, alpha_clamp: tuple[float, float] = (5e-4, 5e-2)
) -> tuple[torch.nn.Module, dict[str, _BatLayer]]:
    """A deep copy of ``model`` with every Conv2d/Linear replaced by a ``BatConv2d``/``BatLinear`` (warm-up mode).

    Returns the copy and a map from the ORIGINAL weight's parameter name (e.g. ``"1.weight"``) to its BAT layer.
    Raises ``ConfigurationError`` for bad rho/alpha_clamp, nothing to binarize, subclasses of Conv2d/Linear, or
    weights tied between distinct layers.
    """
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"model is a {type(model).__name__}; pass a torch.nn.Module")
    check_number("rho", rho, lambda v: v >= 0, ">= 0, e.g. 6.0")
    low, high = _check_clamp(alpha_clamp)
    copied = copy.deepcopy(model)
    replaced: dict[int, _BatLayer] = {}
    layers: dict[str, _BatLayer] = {}
    weights: set[int] = set()
    for name, module in list(copied.named_modules(remove_duplicate=False)):
        if not isinstance(module, BINARIZED_MODULES):
            continue
        if type(module) not in (torch.nn.Linear, torch.nn.Conv2d):
            raise ConfigurationError(f"layer {name!r} is a {type(module).__name__}; only plain Conv2d and Linear "
                                     "layers (not subclasses) can be trained with FedBAT under DP-SGD")
        if id(module) not in replaced:
            if id(module.weight) in weights:
                raise ConfigurationError(f"layer {name!r} shares its weight with another layer; tied Conv2d/Linear "
                                         "weights are not supported by FedBAT under DP-SGD")
            weights.add(id(module.weight))
            kind = BatLinear if type(module) is torch.nn.Linear else BatConv2d
            replaced[id(module)] = layers[f"{name}.weight" if name else "weight"] = kind(module, rho, low, high)
        if not name:
            return replaced[id(module)], layers
        parent, _, child = name.rpartition(".")
        setattr(copied.get_submodule(parent), child, replaced[id(module)])
    if not layers:
        raise ConfigurationError("model has no Conv2d or Linear weight to binarize; FedBAT needs one "
                                 "(use secfl.fl.dpsgd.dp_local_train instead)")
    return copied, layers


@dataclass(frozen=True, kw_only=True)
class FedBatDpResult(FedBatResult):
    """``FedBatResult`` (``raw``, ``warmup_mean_abs`` filled in) plus this client's cumulative ``epsilon`` at
    ``config.delta`` and the accountant ``state_dict()`` (``{"history": [(sigma, q, steps), ...], "mechanism":
    name}``) to pass back, as in ``DpLocalResult``. ``loss`` is the mean over the examples drawn in the last
    epoch (NaN if none)."""

    epsilon: float
    accountant_state: dict


def fedbat_dp_local_train(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, config: DpSgdConfig, accountant_state: dict | None = None,
    epochs: int, batch_size: int, lr: float, seed: int, rho: float = 6.0, phi: float = 0.5,
    alpha_clamp: tuple[float, float] = (5e-4, 5e-2), momentum: float = 0.0, weight_decay: float = 0.0,
    alpha0: Mapping[str, float] | None = None,
) -> FedBatDpResult:
    """``fedbat.fedbat_local_train`` with Opacus DP-SGD steps; ``model`` and ``accountant_state`` are not modified.

    Batches, sample rate and accounting follow ``dpsgd.dp_local_train`` (Poisson sampling per ``config``, rate
    q = 1 / ceil(n / batch_size); sampling and noise generators seeded from ``(seed, steps already in
    accountant_state)``). Warm-up counts optimizer steps, empty Poisson batches included: the first floor(phi * S)
    of the S = epochs * len(loader) steps use W + m (a_l frozen at 0, so it gets no noise either); len(loader) is
    ceil(n / batch_size), except that Opacus's Poisson loader takes int(1 / q) steps, one fewer for some sizes
    (e.g. 93 batches). Then alpha0_l = mean|m_l| and each step draws one binarizer sample per layer, shared by
    the batch. The upload is a fresh binarizer sample, exactly as in ``fedbat_local_train``; ``bits``, ``alphas``
    and ``binarized_mask`` use the original model's parameter names and ``flatten`` order. The binarizer and
    upload generators derive from ``(seed, prior steps)`` too: equal inputs give an identical result.

    ``config.grad_sample_mode`` must be "functorch" or "hooks" (both use torch.func for the BAT layers); "ghost"
    is refused. ``alpha0`` (name -> value, every binarized weight) replaces mean|m_l| at the end of the warm-up, as
    in ``fedbat_local_train`` (the secure route's public step sizes). Raises ``ConfigurationError`` for bad arguments or state, or a model Opacus cannot handle.
    """
    inputs, targets = _tensors(x, y)
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    if seed >= 2**64:
        raise ConfigurationError(f"seed={seed!r} is invalid; pass an integer in [0, 2**64)")
    check_number("lr", lr, lambda v: v > 0, "> 0, e.g. 0.1")
    check_number("phi", phi, lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.5 (phi = 1 never binarizes)")
    check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    check_number("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
    if not isinstance(config, DpSgdConfig):
        raise ConfigurationError(f"config is a {type(config).__name__}; pass a DpSgdConfig")
    if config.grad_sample_mode == "ghost":
        raise ConfigurationError(
            "grad_sample_mode='ghost' is invalid here: ghost clipping needs a per-layer norm sampler, which FedBAT's "
            "custom BatLinear/BatConv2d layers lack; use 'functorch' or 'hooks' (per-sample gradients via torch.func)")
    trained, layers = bat_model(model, rho=rho, alpha_clamp=alpha_clamp)
    public = None if alpha0 is None else _check_alphas(alpha0, layers)
    engine, prior_steps, (sampling, noise) = start(model, config, accountant_state, seed)  # as dp_local_train
    words = np.random.SeedSequence([seed, prior_steps, _STREAM_TAG]).generate_state(2, dtype=np.uint64)
    binarizer, uploader = (torch.Generator().manual_seed(int(w)) for w in words)

    trained.train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True, generator=sampling)
    criterion = torch.nn.CrossEntropyLoss()
    try:
        private, dp_optimizer, dp_loader = engine.make_private(
            module=trained, optimizer=optimizer, data_loader=loader, noise_multiplier=float(config.noise_multiplier),
            max_grad_norm=float(config.max_grad_norm), poisson_sampling=config.poisson_sampling,
            grad_sample_mode=config.grad_sample_mode, noise_generator=noise)
    except (NotImplementedError, ValueError) as error:  # e.g. a trainable layer with buffers
        raise ConfigurationError(f"model is incompatible with Opacus DP-SGD: {error}") from error
    for layer in layers.values():  # a_l is unused during warm-up: keep it out of the optimizer (and its noise)
        layer.a.requires_grad_(False)
    warmup, step = math.floor(phi * epochs * len(dp_loader)), 0
    with warnings.catch_warnings():  # benign: input batches never require grad; Opacus needs only output grads
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(epochs):
            total, seen = 0.0, 0
            for xb, yb in dp_loader:
                if step == warmup:
                    for name, layer in layers.items():
                        layer.start_binarizing(None if public is None else public[name])
                        layer.a.requires_grad_(True)
                if step >= warmup:
                    for layer in layers.values():
                        layer.draw(binarizer)
                step += 1
                dp_optimizer.zero_grad(set_to_none=True)
                loss = criterion(private(xb), yb)
                loss.backward()
                dp_optimizer.step()  # an empty Poisson batch still takes a (noise-only) step
                if len(yb):
                    total, seen = total + loss.item() * len(yb), seen + len(yb)

    params = dict(trained.named_parameters())
    chunks, raws, masks, bits, alphas = [], [], [], {}, {}
    with torch.no_grad():
        for name, param in model.named_parameters():  # flatten(model) order, original names
            if name in layers:
                layer = layers[name]
                alpha = layer.alpha().to(torch.float32)
                u = torch.rand(layer.m.shape, generator=uploader, dtype=layer.m.dtype)
                bits[name] = _sample_bits(layer.m / alpha.to(layer.m.dtype), u).reshape(-1).to(torch.uint8).numpy()
                alphas[name] = float(alpha)
                chunks.append(np.float32(alphas[name]) * (2 * bits[name].astype(np.float32) - 1))
                raws.append(layer.m.reshape(-1).float().cpu().numpy())
            else:
                chunks.append((params[name].reshape(-1).float() - param.reshape(-1).float()).cpu().numpy())
                raws.append(chunks[-1])
            masks.append(np.full(param.numel(), name in layers))
    history = tuple((float(s), float(q), int(t)) for s, q, t in engine.accountant.history)
    warm = {name: layer.shared.warm for name, layer in layers.items()}
    return FedBatDpResult(
        delta=np.concatenate(chunks).astype(np.float32), bits=bits, alphas=alphas,
        binarized_mask=np.concatenate(masks), num_examples=len(targets), loss=total / seen if seen else math.nan,
        raw=np.concatenate(raws).astype(np.float32), warmup_mean_abs=warm,
        epsilon=_epsilon(engine.accountant.mechanism(), history, float(config.delta)),
        accountant_state={"history": list(history), "mechanism": engine.accountant.mechanism()})
