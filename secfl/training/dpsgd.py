"""Sample-level DP-SGD as a wrapper any loop trainer goes through, built on Opacus.

``DpSgd(config)`` is handed to ``fit`` (``trainer.train(task, privacy=DpSgd(config))``). It replaces the
trainer's module, optimizer and data with Opacus's private ones (``make_private``): every step clips each
example's gradient to C = ``max_grad_norm`` and adds N(0, (noise_multiplier * C)^2) noise to the sum, over
Poisson-sampled batches. An Opacus accountant tracks this client's (epsilon, delta) across rounds; its
state travels in ``LocalResult.state["dp_sgd"]`` (and the epsilon in ``state["epsilon"]``).

Threat model: the noise comes from a *seeded* ``torch.Generator`` (Mersenne Twister, floating-point Gaussian),
because Opacus's ``secure_mode`` needs the dead ``torchcsprng``. Runs are reproducible, but the noise is not secret:
whoever knows or guesses the seed (e.g. the server, or anyone reading the experiment config) can regenerate and
subtract it, so the reported epsilon does not hold against them. Use this for utility and accounting experiments,
not as a deployed sample-level privacy guarantee.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.accountants import create_accountant
from opacus.validators import ModuleValidator
from torch.utils.data import DataLoader, TensorDataset

from secfl.checks import check_number
from secfl.exceptions import ConfigurationError
from secfl.training.trainer import LocalResult, Setup, Task, with_state

__all__ = ["DpSgd", "DpSgdConfig"]


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


@dataclass
class _Session:
    engine: PrivacyEngine
    stream: tuple[int, ...]  # (seed, steps already accounted): the trainer's own generators derive from it
    sampling: torch.Generator
    noise: torch.Generator


class DpSgd:
    """The DP-SGD wrapper for ``fit``: ``open`` (per task), ``make_private`` (the setup), ``close`` (the result).

    Sampling and noise generators are seeded from ``(task.seed, steps already in the accountant state)``: equal
    inputs give equal deltas, and a passed-back state changes the noise even if the seed is reused (still use a
    fresh seed per client and round). An epoch is ``ceil(n / batch_size)`` steps at rate q = 1 / that number.
    """

    def __init__(self, config: DpSgdConfig) -> None:
        if not isinstance(config, DpSgdConfig):
            raise ConfigurationError(f"config is a {type(config).__name__}; pass a DpSgdConfig")
        self.config = config

    def open(self, task: Task) -> _Session:
        """Check the model for Opacus and continue this client's accountant (``task.state["dp_sgd"]``)."""
        if not isinstance(task.model, torch.nn.Module):
            raise ConfigurationError(f"model is a {type(task.model).__name__}; pass a torch.nn.Module")
        if problems := ModuleValidator.validate(task.model, strict=False):
            raise ConfigurationError(
                f"model is incompatible with Opacus DP-SGD: {'; '.join(map(str, problems))}. Replace BatchNorm with "
                "GroupNorm (opacus.validators.ModuleValidator.fix(model), or build_model('cnn'))")
        engine = privacy_engine(self.config, task.state.get("dp_sgd"))
        prior_steps = sum(t for _, _, t in engine.accountant.history)
        words = np.random.SeedSequence([task.seed, prior_steps]).generate_state(2, dtype=np.uint64)
        sampling, noise = (torch.Generator().manual_seed(int(w)) for w in words)
        return _Session(engine, (task.seed, prior_steps), sampling, noise)

    def make_private(self, setup: Setup, session: _Session) -> Setup:
        """The private module, optimizer, Poisson loader (and, for ghost clipping, criterion) of ``setup``."""
        config = self.config
        loader = DataLoader(TensorDataset(setup.inputs, setup.targets), batch_size=setup.batch_size, shuffle=True,
                            generator=session.sampling)
        criterion = torch.nn.CrossEntropyLoss()
        try:
            private, optimizer, *ghost, dp_loader = session.engine.make_private(
                module=setup.module, optimizer=setup.optimizer, data_loader=loader, criterion=criterion,
                noise_multiplier=float(config.noise_multiplier), max_grad_norm=float(config.max_grad_norm),
                poisson_sampling=config.poisson_sampling, grad_sample_mode=config.grad_sample_mode,
                noise_generator=session.noise)
        except (NotImplementedError, ValueError) as error:  # e.g. a trainable layer with buffers
            raise ConfigurationError(f"model is incompatible with Opacus DP-SGD: {error}") from error
        extra = {**setup.extra, "plain": setup.module}  # the trained weights, read without Opacus's wrapper
        return Setup(private, optimizer, setup.inputs, setup.targets, setup.batch_size,
                     criterion=ghost[0] if ghost else criterion, loader=dp_loader, stream=setup.stream, extra=extra)

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Silence Opacus's benign warning: input batches never require grad; Opacus needs only output grads."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            yield

    def close(self, result: LocalResult, session: _Session) -> LocalResult:
        """``result`` with the accountant's state and this client's cumulative epsilon at ``config.delta``."""
        engine = session.engine
        history = tuple((float(s), float(q), int(t)) for s, q, t in engine.accountant.history)
        epsilon = _epsilon(engine.accountant.mechanism(), history, float(self.config.delta))
        return with_state(result, dp_sgd={"history": list(history), "mechanism": engine.accountant.mechanism()},
                          epsilon=epsilon)


def privacy_engine(config: DpSgdConfig, accountant_state: Any) -> PrivacyEngine:
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
        return float("inf")
    accountant = create_accountant(mechanism)
    accountant.history = list(history)
    with np.errstate(divide="ignore"):  # PRV takes log(1 - q) = -inf on purpose when q = 1
        return float(accountant.get_epsilon(delta=delta))
