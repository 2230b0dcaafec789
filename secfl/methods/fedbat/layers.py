"""FedBAT's trainable layers: a Conv2d/Linear whose frozen weight W moves by a (binarized) update m.

Each Conv2d/Linear of a model becomes a ``BatLinear``/``BatConv2d`` with parameters ``m`` (zeros), ``a``
(the step-size logit, 0) and ``bias``. During the warm-up it computes with W + m; afterwards with
W + B(m; alpha), alpha = clamp(alpha0 exp(rho a), lo, hi), using uniforms ``u`` drawn once per step.
Because they are ordinary modules, the same layers train with plain SGD and under Opacus DP-SGD: Opacus
has no grad sampler for them and computes their per-example gradients with ``torch.func`` (in both the
"functorch" and the "hooks" mode); u is drawn outside vmap and shared by every example of the batch, so
each per-example gradient is the exact (STE) gradient of that example's loss at the batch's binarized
weight. The frozen W, u and alpha0 live in a ``_Shared`` object that ``copy.deepcopy`` does not copy,
because Opacus's functorch path runs the layer through a deep copy made once and must still see this
step's u.
"""

from __future__ import annotations

import copy

import torch

from secfl.checks import check_number
from secfl.exceptions import ConfigurationError
from secfl.methods.fedbat.binarize import BINARIZED_MODULES, Binarize, check_clamp

__all__ = ["BatConv2d", "BatLinear", "bat_model"]


class _Shared:
    """A layer's frozen weight, rho, clamp, alpha0 (None during warm-up) and this step's uniforms ``u``.

    Deep copies share it (``__deepcopy__`` returns self). It holds no parameter or buffer, so Opacus's
    "no buffers" check passes."""

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
        return s.weight + Binarize.apply(self.m, self.alpha(), s.u)

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
    low, high = check_clamp(alpha_clamp)
    copied = copy.deepcopy(model)
    replaced: dict[int, _BatLayer] = {}
    layers: dict[str, _BatLayer] = {}
    weights: set[int] = set()
    for name, module in list(copied.named_modules(remove_duplicate=False)):
        if not isinstance(module, BINARIZED_MODULES):
            continue
        if type(module) not in (torch.nn.Linear, torch.nn.Conv2d):
            raise ConfigurationError(f"layer {name!r} is a {type(module).__name__}; only plain Conv2d and Linear "
                                     "layers (not subclasses) can be trained with FedBAT")
        if id(module) not in replaced:
            if id(module.weight) in weights:
                raise ConfigurationError(f"layer {name!r} shares its weight with another layer; tied Conv2d/Linear "
                                         "weights are not supported by FedBAT")
            weights.add(id(module.weight))
            kind = BatLinear if type(module) is torch.nn.Linear else BatConv2d
            replaced[id(module)] = layers[f"{name}.weight" if name else "weight"] = kind(module, rho, low, high)
        if not name:
            return replaced[id(module)], layers
        parent, _, child = name.rpartition(".")
        setattr(copied.get_submodule(parent), child, replaced[id(module)])
    if not layers:
        raise ConfigurationError("model has no Conv2d or Linear weight to binarize; FedBAT needs one "
                                 "(use the plain SGD trainer instead)")
    return copied, layers
