"""Sample-level DP-SGD inside one client's local training, built on Opacus.

Each step clips every example's gradient to C = ``max_grad_norm`` and adds N(0, (noise_multiplier * C)^2) noise to
the sum; an Opacus accountant tracks this client's (epsilon, delta) across calls.

Threat model: the noise comes from a *seeded* ``torch.Generator`` (Mersenne Twister, floating-point Gaussian),
because Opacus's ``secure_mode`` needs the dead ``torchcsprng``. Runs are reproducible, but the noise is not secret:
whoever knows or guesses the seed (e.g. the server, or anyone reading the experiment config) can regenerate and
subtract it, so the reported epsilon does not hold against them. Use this for utility and accounting experiments,
not as a deployed sample-level privacy guarantee.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, TensorDataset

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError
from secfl.fl.client import _tensors
from secfl.fl.params import flatten

__all__ = ["DpLocalResult", "DpSgdConfig", "dp_local_train"]


@dataclass(frozen=True)
class DpSgdConfig:
    """DP-SGD settings for one client.

    ``noise_multiplier`` (>= 0; 0 means no privacy, epsilon = inf) times ``max_grad_norm`` (the per-example L2
    clip C, > 0) is the noise std. ``grad_sample_mode``: ``"hooks"``, ``"functorch"`` (per-sample gradients) or
    ``"ghost"`` (ghost clipping, no per-sample gradients stored). ``poisson_sampling=False`` uses shuffled
    fixed-size batches, yet the reported epsilon is still the Poisson bound, which is not proven for shuffling.
    ``delta`` in (0, 1), default 1e-5: keep it well below 1 / (local examples). ``accountant``: ``"rdp"`` or
    ``"prv"`` (Opacus accountants; Poisson sampling, add/remove-one neighbours).
    """

    noise_multiplier: float
    max_grad_norm: float
    grad_sample_mode: str = "hooks"
    poisson_sampling: bool = True
    delta: float = 1e-5
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        check_number("noise_multiplier", self.noise_multiplier, lambda v: v >= 0, ">= 0, e.g. 1.0")
        check_number("max_grad_norm", self.max_grad_norm, lambda v: v > 0, "> 0, e.g. 1.0")
        check_number("delta", self.delta, lambda v: 0 < v < 1, "in (0, 1), e.g. 1e-5")
        for name, choices in [("grad_sample_mode", ("hooks", "functorch", "ghost")), ("accountant", ("rdp", "prv"))]:
            if (value := getattr(self, name)) not in choices:
                raise ConfigurationError(f"{name}={value!r} is invalid; choose one of {', '.join(choices)}")
        if not isinstance(self.poisson_sampling, bool):
            raise ConfigurationError(f"poisson_sampling={self.poisson_sampling!r} is invalid; pass True or False")


@dataclass(frozen=True)
class DpLocalResult:
    """``LocalResult`` fields plus this client's cumulative ``epsilon`` at ``config.delta`` and the
    accountant ``state_dict()`` (``{"history": [(sigma, q, steps), ...], "mechanism": name}``) to pass back."""

    delta: np.ndarray
    num_examples: int
    loss: float
    epsilon: float
    accountant_state: dict


def dp_local_train(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int, lr: float, seed: int,
    config: DpSgdConfig, momentum: float = 0.0, weight_decay: float = 0.0, accountant_state: dict | None = None,
) -> DpLocalResult:
    """Like ``client.local_train`` but with DP-SGD; ``model`` and ``accountant_state`` are not modified.

    An epoch is ``ceil(n / batch_size)`` steps at sample rate ``q = 1 / ceil(n / batch_size)`` (Opacus's rule;
    ``batch_size / n`` when it divides n). ``loss`` is the mean over examples drawn in the last epoch (NaN if none).
    Sampling and noise generators are seeded from ``(seed, steps already in accountant_state)``: equal inputs give
    equal deltas, and a passed-back state changes the noise even if the seed is reused (still use a fresh seed per
    client and round). Raises ``ConfigurationError`` for bad arguments or state, or a model Opacus cannot handle.
    """
    inputs, targets = _tensors(x, y)
    epochs, batch_size = check_int("epochs", epochs, 1), check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    check_number("lr", lr, lambda v: v > 0, "> 0, e.g. 0.05")
    check_number("momentum", momentum, lambda v: 0 <= v < 1, "in [0, 1)")
    check_number("weight_decay", weight_decay, lambda v: v >= 0, ">= 0")
    if not isinstance(config, DpSgdConfig):
        raise ConfigurationError(f"config is a {type(config).__name__}; pass a DpSgdConfig")
    engine, prior_steps, (sampling, noise) = start(model, config, accountant_state, seed)
    trained = copy.deepcopy(model).train()
    optimizer = torch.optim.SGD(trained.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True, generator=sampling)
    criterion = torch.nn.CrossEntropyLoss()
    private, dp_optimizer, *ghost, dp_loader = engine.make_private(
        module=trained, optimizer=optimizer, data_loader=loader, criterion=criterion,
        noise_multiplier=float(config.noise_multiplier), max_grad_norm=float(config.max_grad_norm),
        poisson_sampling=config.poisson_sampling, grad_sample_mode=config.grad_sample_mode, noise_generator=noise)
    criterion = ghost[0] if ghost else criterion  # ghost: a DPLossFastGradientClipping, whose backward() clips
    with warnings.catch_warnings():  # benign: input batches never require grad; Opacus needs only output grads
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for _ in range(epochs):
            total, seen = 0.0, 0
            for xb, yb in dp_loader:
                dp_optimizer.zero_grad(set_to_none=True)
                loss = criterion(private(xb), yb)
                loss.backward()
                dp_optimizer.step()  # an empty Poisson batch still takes a (noise-only) step
                if len(yb):
                    total, seen = total + loss.item() * len(yb), seen + len(yb)

    history = tuple((float(s), float(q), int(t)) for s, q, t in engine.accountant.history)
    epsilon = _epsilon(engine.accountant.mechanism(), history, float(config.delta))
    return DpLocalResult(flatten(trained) - flatten(model), len(targets), total / seen if seen else math.nan,
                         epsilon, {"history": list(history), "mechanism": engine.accountant.mechanism()})


def start(model: torch.nn.Module, config: DpSgdConfig, accountant_state: dict | None,
          seed: int) -> tuple[PrivacyEngine, int, tuple[torch.Generator, torch.Generator]]:
    """Check ``model`` for Opacus; the engine continuing ``accountant_state``, its steps so far, and the
    (sampling, noise) generators seeded from (seed, those steps)."""
    if problems := ModuleValidator.validate(model, strict=False):
        raise ConfigurationError(
            f"model is incompatible with Opacus DP-SGD: {'; '.join(map(str, problems))}. Replace BatchNorm with "
            "GroupNorm (opacus.validators.ModuleValidator.fix(model), or build_model('cnn'))")
    engine = privacy_engine(config, accountant_state)
    prior_steps = sum(t for _, _, t in engine.accountant.history)
    words = np.random.SeedSequence([seed, prior_steps]).generate_state(2, dtype=np.uint64)
    sampling, noise = (torch.Generator().manual_seed(int(w)) for w in words)
    return engine, prior_steps, (sampling, noise)


def privacy_engine(config: DpSgdConfig, accountant_state: dict | None) -> PrivacyEngine:
    """An Opacus PrivacyEngine whose accountant continues ``accountant_state`` (None: a fresh one)."""
    with warnings.catch_warnings():  # running without torchcsprng is deliberate and documented above
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        engine = PrivacyEngine(accountant=config.accountant)
    if accountant_state is not None:
        try:  # a fresh, normalised history list: Opacus's load_state_dict would alias the caller's list
            history = [(float(s), float(q), int(t)) for s, q, t in accountant_state["history"]]
            engine.accountant.load_state_dict({"history": history, "mechanism": accountant_state["mechanism"]})
        except (TypeError, ValueError, KeyError) as error:
            raise ConfigurationError(f"accountant_state is invalid ({error}); pass None or the accountant_state of "
                                     f"an earlier result with accountant={config.accountant!r}") from error
    return engine


@functools.lru_cache(maxsize=4096)  # RDP takes ~0.1-0.3 s per call; clients of a round often share a history
def _epsilon(mechanism: str, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """Epsilon of an accountant history at ``delta``; inf if any step had no noise."""
    if any(sigma == 0 for sigma, _, _ in history):
        return math.inf
    accountant = create_accountant(mechanism)
    accountant.history = list(history)
    with np.errstate(divide="ignore"):  # PRV takes log(1 - q) = -inf on purpose when q = 1
        return float(accountant.get_epsilon(delta=delta))
