"""FedBAT: federated binarization-aware training (Li et al., ICML 2024; docs/methods/fedbat.md).

The client does not upload a full-precision delta for its Conv2d and Linear weights. For each such
weight W_l it trains an update m_l (from zero) and, after a warm-up, runs the forward pass with the
stochastically binarized update B(m_l; alpha_l) in {-alpha_l, +alpha_l}, whose step size alpha_l is
learned too (alpha_l = clamp(alpha0_l * exp(rho * a_l), lo, hi)). The upload is a fresh sample of
B(m_l; alpha_l) as one bit per weight plus alpha_l as one float per layer. Everything else (biases,
GroupNorm/BatchNorm affine parameters) trains and is sent as an ordinary fp32 delta. Buffers (e.g.
BatchNorm running statistics) are not part of the delta, exactly as in ``client.local_train``.

What is binarized: the ``weight`` of every ``torch.nn.Conv2d`` and ``torch.nn.Linear`` module; nothing
else.

Privacy note: FedBAT is NOT differential privacy by itself. The stochastic binarizer resembles
randomized response per coordinate, but its epsilon is unbounded as |m_i| -> alpha and composes over
all coordinates; sign vectors still admit gradient inversion and label inference. alpha_l leaks the
per-layer update magnitude (alpha0 = mean|m_l| is data-dependent). Add sample-level DP-SGD during local
training, or noise m before binarization with a data-independent alpha, for a guarantee; and note that
secure aggregation of per-client alphas conflicts with the 1-bit uplink. See docs/methods/fedbat.md sections 4
(secure aggregation) and 5 (privacy).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.func import functional_call
from torch.nn import functional

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError
from secfl.fl.client import _tensors
from secfl.fl.params import flatten

__all__ = ["BINARIZED_MODULES", "FedBatResult", "binarize", "fedbat_local_train"]

#: Module types whose ``weight`` is trained and uploaded in binarized form.
BINARIZED_MODULES: tuple[type[torch.nn.Module], ...] = (torch.nn.Conv2d, torch.nn.Linear)

# Domain-separation tag for the two binarizer generators (training, upload) derived from ``seed``. Shuffling
# uses ``seed`` itself, exactly like ``client.local_train``, so both see the same batches.
_STREAM_TAG = 0xFEDBA7


def _sample_bits(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """b = clamp(floor((x + 1) / 2 + u), 0, 1) as a float tensor of zeros and ones (x = m / alpha)."""
    return torch.clamp(torch.floor((x + 1) / 2 + u), 0, 1)


class _Binarize(torch.autograd.Function):
    """B(m; alpha) = alpha (2b - 1) with a clipped STE for m and the FedBAT gradient for alpha."""

    @staticmethod
    def forward(ctx, m: torch.Tensor, alpha: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        x = m / alpha
        b = _sample_bits(x, u)
        ctx.save_for_backward(x, b)
        return alpha * (2 * b - 1)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, b = ctx.saved_tensors
        grad_m = grad_alpha = None
        if ctx.needs_input_grad[0]:
            grad_m = g * (x.abs() <= 1).to(g.dtype)
        if ctx.needs_input_grad[1]:
            inside = (2 * b - 1) - x
            c = torch.where(x > 1, torch.ones_like(x), torch.where(x < -1, -torch.ones_like(x), inside))
            grad_alpha = (g * c).sum()
        return grad_m, grad_alpha, None


def binarize(m: torch.Tensor, alpha: torch.Tensor | float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastically binarize ``m`` to ``{-alpha, +alpha}`` (differentiable in ``m`` and ``alpha``).

    Element-wise, with x = m / alpha and u ~ U[0, 1): b = clamp(floor((x + 1) / 2 + u), 0, 1) and
    B = alpha (2b - 1). For |m| <= alpha, P(B = +alpha) = (1 + x) / 2, so E[B] = m; beyond, B = alpha sign(m).

    Backward, with g = dL/dB: dL/dm = g * 1[|x| <= 1] (clipped straight-through estimator) and
    dL/dalpha = sum_i g_i c_i, c_i = +1 if x_i > 1, -1 if x_i < -1, else (2 b_i - 1) - x_i.

    Args:
        m: A floating-point tensor (any shape).
        alpha: The positive, finite step size: a one-element tensor (one scalar per layer) or a number.
        generator: Source of the uniforms ``u``; torch's global generator if None.

    Returns:
        A tensor shaped like ``m`` whose entries are exactly ``alpha`` or ``-alpha``.

    Raises:
        ConfigurationError: ``m`` is not a floating tensor, ``alpha`` is not a positive finite scalar, or
            ``generator`` is not a ``torch.Generator``.
    """
    if not isinstance(m, torch.Tensor) or not m.is_floating_point():
        raise ConfigurationError(f"m is a {type(m).__name__}; pass a floating-point torch.Tensor")
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        alpha = torch.tensor(float(alpha), dtype=m.dtype, device=m.device)
    if not isinstance(alpha, torch.Tensor) or alpha.numel() != 1 or not alpha.is_floating_point():
        raise ConfigurationError(f"alpha={alpha!r} is invalid; pass a one-element floating tensor (or a number)")
    value = float(alpha.detach())
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"alpha={value!r} is invalid; pass a finite alpha > 0")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigurationError(f"generator is a {type(generator).__name__}; pass a torch.Generator or None")
    return _binarize(m, alpha, generator)


def _binarize(m: torch.Tensor, alpha: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Unchecked ``binarize`` for the training loop (alpha is a one-element tensor)."""
    u = torch.rand(m.shape, generator=generator, dtype=m.dtype, device=m.device)
    return _Binarize.apply(m, alpha.reshape(()), u)


@dataclass(frozen=True)
class FedBatResult:
    """The upload of one FedBAT client, and the delta the server reconstructs from it.

    Attributes:
        delta: float32 ``[d]`` in ``flatten(model)`` order: ``alpha_l (2 b_l - 1)`` at the coordinates of each
            binarized weight, the trained-minus-initial fp32 delta everywhere else. The server adds this.
        bits: Binarized weight's parameter name (e.g. ``"1.weight"``) -> uint8 ``[|W_l|]`` of ``b_l`` in {0, 1}
            (row-major flatten of the weight).
        alphas: Same keys -> ``alpha_l`` (the float32 value, as a Python float).
        binarized_mask: bool ``[d]``: True at the coordinates sent as bits.
        num_examples: Number of training examples used.
        loss: Mean per-example training loss over the last epoch.
        raw: float32 ``[d]``: ``delta`` with the trained update m_l (before the upload's binarization) at the
            binarized coordinates; what a secure or DP route binarizes itself (None if not kept).
        warmup_mean_abs: Same keys as ``alphas`` -> mean|m_l| at the end of the warm-up (FedBAT's own alpha0).
    """

    delta: np.ndarray
    bits: dict[str, np.ndarray]
    alphas: dict[str, float]
    binarized_mask: np.ndarray
    num_examples: int
    loss: float
    raw: np.ndarray | None = None
    warmup_mean_abs: dict[str, float] | None = None

    @property
    def num_binarized(self) -> int:
        """Number of coordinates sent as one bit each."""
        return int(np.count_nonzero(self.binarized_mask))

    @property
    def uplink_bits(self) -> int:
        """Bits uploaded: one per binarized coordinate, 32 per layer's alpha, 32 per fp32 coordinate."""
        binarized = self.num_binarized
        return binarized + 32 * len(self.alphas) + 32 * (self.binarized_mask.size - binarized)


def fedbat_local_train(
    model: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    rho: float = 6.0,
    phi: float = 0.5,
    alpha_clamp: tuple[float, float] = (5e-4, 5e-2),
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    alpha0: Mapping[str, float] | None = None,
) -> FedBatResult:
    """One client's FedBAT local training on cross-entropy; ``model`` is not modified (a deep copy trains).

    Every Conv2d/Linear weight W_l stays frozen; an update m_l and a scalar a_l start at zero. Of the
    S = epochs * ceil(n / batch_size) SGD iterations, the first floor(phi * S) (warm-up) run the forward pass
    with W_l + m_l. Then alpha0_l = mean|m_l| (lower clamp if 0) is fixed and the rest use W_l + B(m_l; alpha_l)
    with alpha_l = clamp(alpha0_l exp(rho a_l), *alpha_clamp). SGD (``lr``, ``momentum``, ``weight_decay``)
    updates {m_l, a_l} and all other parameters directly; note weight decay therefore shrinks m_l (the
    update), not W_l + m_l. The upload is a fresh sample of B(m_l; alpha_l) per layer plus the fp32 deltas.

    Batches follow ``torch.Generator().manual_seed(seed)`` exactly like ``client.local_train``; the
    binarizer's uniforms in training and at upload come from two further generators derived from ``seed``,
    so equal inputs give a bit-identical result. Use a fresh seed per client and round.

    Args:
        model: The starting model; it needs at least one Conv2d or Linear layer.
        x: float inputs ``[n, *input_shape]``.
        y: int labels ``[n]``.
        epochs: Passes over the data, >= 1.
        batch_size: Examples per step, >= 1.
        lr: SGD learning rate, > 0 (the paper uses 0.1).
        seed: Seed, an integer in [0, 2**64).
        rho: Learning-rate multiplier of the step size (alpha = alpha0 exp(rho a)), finite >= 0; 0 fixes
            alpha at clamp(alpha0).
        phi: Warm-up fraction of the local iterations, in [0, 1). phi = 1 would upload a full-precision
            update, which is not FedBAT.
        alpha_clamp: ``(lo, hi)`` with 0 < lo <= hi: the range of every alpha_l.
        momentum: SGD momentum in [0, 1).
        weight_decay: L2 penalty >= 0 on m_l, a_l and the other parameters.
        alpha0: Parameter name -> alpha0_l for every binarized weight, used at the end of the warm-up instead
            of mean|m_l| (the secure route, ``fedbat_secure``, passes the round's PUBLIC step sizes; with
            rho = 0 alpha_l then stays exactly there). None: FedBAT's own alpha0_l = mean|m_l|.

    Returns:
        The ``FedBatResult`` (``delta``, ``num_examples`` and ``loss`` mean what they do in ``LocalResult``).

    Raises:
        ConfigurationError: A hyper-parameter out of range, bad data, or a model with nothing to binarize.
    """
    inputs, targets = _tensors(x, y)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    if seed >= 2**64:
        raise ConfigurationError(f"seed={seed!r} is invalid; pass an integer in [0, 2**64)")
    check_number("lr", lr, lambda v: v > 0, "> 0, e.g. 0.1")
    check_number("rho", rho, lambda v: v >= 0, ">= 0, e.g. 6.0")
    check_number("phi", phi, lambda v: 0 <= v < 1, "in [0, 1), e.g. 0.5 (phi = 1 never binarizes)")
    check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    check_number("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
    low, high = _check_clamp(alpha_clamp)
    if not isinstance(model, torch.nn.Module):
        raise ConfigurationError(f"model is a {type(model).__name__}; pass a torch.nn.Module")
    public = None if alpha0 is None else _check_alphas(alpha0, _binarized_weights(model))

    trained = copy.deepcopy(model).train()
    layers = _binarized_weights(trained)
    if not layers:
        raise ConfigurationError(
            "model has no Conv2d or Linear weight to binarize; FedBAT needs one (use client.local_train instead)"
        )
    for weight in layers.values():
        weight.requires_grad_(False)
    updates = {name: torch.zeros_like(w, requires_grad=True) for name, w in layers.items()}
    logits = {name: torch.zeros((), dtype=w.dtype, requires_grad=True) for name, w in layers.items()}
    others = [p for name, p in trained.named_parameters() if name not in layers]
    optimizer = torch.optim.SGD(
        [*updates.values(), *logits.values(), *others], lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    words = np.random.SeedSequence([seed, _STREAM_TAG]).generate_state(2, dtype=np.uint64)
    shuffle = torch.Generator().manual_seed(seed)
    sampler, uploader = (torch.Generator().manual_seed(int(w)) for w in words)

    def step_size(name: str) -> torch.Tensor:
        return torch.clamp(start[name] * torch.exp(rho * logits[name]), low, high)

    n = len(targets)
    warmup = math.floor(phi * epochs * math.ceil(n / batch_size))
    start: dict[str, float] = {}  # alpha0 per layer, set at the end of the warm-up
    warm: dict[str, float] = {}  # mean|m_l| at the end of the warm-up
    step = 0
    for _ in range(epochs):
        total = 0.0
        for batch in torch.randperm(n, generator=shuffle).split(batch_size):
            if step == warmup:  # end of warm-up: fix alpha0 (mean|m| by default) per layer, binarize from here on
                warm = {name: float(m.detach().abs().mean()) or low for name, m in updates.items()}
                start = public or warm
            step += 1
            optimizer.zero_grad(set_to_none=True)
            if start:
                effective = {name: w + _binarize(updates[name], step_size(name), sampler) for name, w in layers.items()}
            else:
                effective = {name: w + updates[name] for name, w in layers.items()}
            loss = functional.cross_entropy(functional_call(trained, effective, (inputs[batch],)), targets[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)

    delta = flatten(trained) - flatten(model)  # zero at the (frozen) binarized weights; filled in below
    raw = delta.copy()
    mask = np.zeros(delta.size, dtype=bool)
    bits: dict[str, np.ndarray] = {}
    uploaded: dict[str, float] = {}
    offset = 0
    with torch.no_grad():
        for name, param in trained.named_parameters():
            size = param.numel()
            if name in layers:
                alpha = step_size(name).to(torch.float32)
                u = torch.rand(updates[name].shape, generator=uploader, dtype=updates[name].dtype)
                b = _sample_bits(updates[name] / alpha.to(updates[name].dtype), u).reshape(-1)
                bits[name] = b.to(torch.uint8).numpy()
                uploaded[name] = float(alpha)
                delta[offset : offset + size] = np.float32(uploaded[name]) * (2 * bits[name].astype(np.float32) - 1)
                mask[offset : offset + size] = True
                raw[offset : offset + size] = updates[name].detach().reshape(-1).to(torch.float32).numpy()
            offset += size
    return FedBatResult(delta=delta, bits=bits, alphas=uploaded, binarized_mask=mask, num_examples=n, loss=total / n,
                        raw=raw, warmup_mean_abs=warm)


def _binarized_weights(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """Parameter name -> weight of every Conv2d/Linear module, in ``named_parameters`` order (ties once)."""
    wanted = {id(module.weight) for module in model.modules() if isinstance(module, BINARIZED_MODULES)}
    return {name: p for name, p in model.named_parameters() if id(p) in wanted}


def _check_alphas(alphas: object, layers: Mapping[str, torch.nn.Parameter]) -> dict[str, float]:
    """Given alpha0 values as name -> float, one finite positive value per binarized weight, or raise."""
    if not isinstance(alphas, Mapping) or set(alphas) != set(layers):
        raise ConfigurationError(f"alpha0 must map every binarized weight ({', '.join(layers)}) to a step size")
    out = {}
    for name, value in alphas.items():
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
            raise ConfigurationError(f"alpha0[{name!r}] = {value!r} is invalid; pass a finite alpha > 0")
        out[name] = float(np.float32(value))
    return out


def _check_clamp(alpha_clamp: object) -> tuple[float, float]:
    """Return alpha_clamp as (lo, hi) floats with 0 < lo <= hi, or raise."""
    ok = (
        isinstance(alpha_clamp, tuple | list)
        and len(alpha_clamp) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in alpha_clamp)
        and 0 < alpha_clamp[0] <= alpha_clamp[1]
    )
    if not ok:
        raise ConfigurationError(
            f"alpha_clamp={alpha_clamp!r} is invalid; pass (lo, hi) with finite 0 < lo <= hi, e.g. (5e-4, 5e-2)"
        )
    return float(alpha_clamp[0]), float(alpha_clamp[1])


def binarized_segments(model: torch.nn.Module) -> list[tuple[int, int]]:
    """``[start, stop)`` of every binarized weight in ``flatten(model)`` order (what FedBAT sends as bits)."""
    wanted, segments, offset = _binarized_weights(model), [], 0
    for name, param in model.named_parameters():
        if name in wanted:
            segments.append((offset, offset + param.numel()))
        offset += param.numel()
    return segments
