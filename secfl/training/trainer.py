"""The local-trainer interface: a ``Task`` in, a ``LocalResult`` out, and ``fit``, the loop most trainers share.

A trainer is anything with ``train(task, privacy=None) -> LocalResult``. A trainer that is a loop of
optimizer steps over shuffled mini-batches subclasses ``LoopTrainer`` and says only what differs from
plain SGD: ``setup`` (the module that trains, its optimizer), ``before_step`` (e.g. FedBAT's warm-up
switch and binarizer draws) and ``finish`` (how the delta is read off). ``fit`` runs the loop. Because the
module, optimizer and data pass through ``fit``, a privacy wrapper (``DpSgd``) can replace them with
private ones, like Opacus's ``make_private``: DP-SGD is not a second copy of any training loop.

Determinism: batches follow ``torch.randperm`` drawn from ``torch.Generator().manual_seed(task.seed)``
once per epoch (the last batch may be smaller), so equal tasks give bit-identical deltas.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch.nn import functional

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError

__all__ = ["Hyper", "Task", "LocalResult", "Setup", "Trainer", "LoopTrainer", "fit", "tensors"]


@dataclass(frozen=True)
class Hyper:
    """Local-training hyper-parameters: epochs >= 1, batch_size >= 1, lr > 0, momentum in [0, 1), weight_decay >= 0."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1)
        check_int("batch_size", self.batch_size, 1)
        check_number("lr", self.lr, lambda v: v > 0, "> 0, e.g. 0.05")
        check_number("momentum", self.momentum, lambda v: 0 <= v < 1, "in [0, 1)")
        check_number("weight_decay", self.weight_decay, lambda v: v >= 0, ">= 0")


@dataclass(frozen=True)
class Task:
    """One client's round of local training.

    Attributes:
        model: the global model; a trainer never modifies it (it trains a copy).
        x, y: the client's float inputs ``[n, ...]`` and integer labels ``[n]``.
        seed: the round's training seed for this client (>= 0).
        hyper: the hyper-parameters.
        state: what this client's previous ``LocalResult.state`` held (checkpointed between rounds).
        public: public per-round state the server sent with the model (set by round hooks, e.g. step sizes).
        client_id, round: who and when (for trainers that need them).
    """

    model: torch.nn.Module
    x: np.ndarray
    y: np.ndarray
    seed: int
    hyper: Hyper = Hyper()
    state: Mapping[str, Any] = field(default_factory=dict)
    public: Mapping[str, Any] = field(default_factory=dict)
    client_id: int = 0
    round: int = 0


@dataclass(frozen=True)
class LocalResult:
    """The outcome of one client's local training.

    Attributes:
        delta: float32 ``[d]``: the update (``flatten`` order) the client sends.
        num_examples: the client's examples (its FedAvg weight).
        loss: mean per-example training loss over the last epoch (NaN if no example was drawn).
        state: what the client keeps for its next round (tensors, numbers, lists and dicts only).
        metrics: per-client numbers the engine averages into the round's row (e.g. ``fedbat_uplink_bits``).
        detail: trainer-specific extras (e.g. FedBAT's bits and step sizes) for the method's hooks.
        loss_examples: the examples ``loss`` was measured on, if not ``num_examples`` (e.g. one minibatch).
    """

    delta: np.ndarray
    num_examples: int
    loss: float
    state: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    detail: Any = None
    loss_examples: int | None = None


@dataclass
class Setup:
    """What ``fit`` trains: the module, its optimizer, the data and the loss; a privacy wrapper replaces them."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    inputs: torch.Tensor
    targets: torch.Tensor
    batch_size: int
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = functional.cross_entropy
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None  # None: shuffled batches of the data
    stream: tuple[int, ...] = ()  # entropy for the trainer's own generators (the seed, plus DP-SGD's prior steps)
    extra: dict[str, Any] = field(default_factory=dict)  # the trainer's own objects (e.g. FedBAT's layers)


@runtime_checkable
class Trainer(Protocol):
    """Anything that trains one client: ``supports_dp`` says whether ``privacy`` may wrap it."""

    name: ClassVar[str]
    supports_dp: ClassVar[bool]

    def train(self, task: Task, privacy: Any = None) -> LocalResult: ...


class LoopTrainer:
    """A trainer that is a loop of optimizer steps; subclasses override ``setup``/``before_step``/``finish``."""

    name: ClassVar[str] = "loop"
    supports_dp: ClassVar[bool] = True

    def setup(self, task: Task, inputs: torch.Tensor, targets: torch.Tensor, stream: tuple[int, ...]) -> Setup:
        raise NotImplementedError

    def before_step(self, setup: Setup, step: int, total_steps: int) -> None:
        """Called before every optimizer step (``step`` counts from 0 over all epochs)."""

    def finish(self, setup: Setup, task: Task, loss: float) -> LocalResult:
        raise NotImplementedError

    def train(self, task: Task, privacy: Any = None) -> LocalResult:
        return fit(self, task, privacy)


def fit(trainer: LoopTrainer, task: Task, privacy: Any = None) -> LocalResult:
    """Run ``trainer``'s loop on ``task``, through ``privacy`` (a ``DpSgd``) if given.

    Raises:
        ConfigurationError: bad data, hyper-parameters or seed, or a model the privacy wrapper cannot handle.
    """
    if not isinstance(task, Task):
        raise ConfigurationError(f"task is a {type(task).__name__}; pass a secfl.training.Task")
    inputs, targets = tensors(task.x, task.y)
    seed = check_int("seed", task.seed, 0)
    if seed >= 2**64:
        raise ConfigurationError(f"seed={seed!r} is invalid; pass an integer in [0, 2**64)")
    session = privacy.open(task) if privacy is not None else None
    setup = trainer.setup(task, inputs, targets, session.stream if session is not None else (seed,))
    if session is not None:
        setup = privacy.make_private(setup, session)
    loader = setup.loader if setup.loader is not None else _Shuffled(inputs, targets, setup.batch_size, seed)
    total_steps, step = task.hyper.epochs * len(loader), 0
    total, seen = 0.0, 0
    with privacy.quiet() if privacy is not None else contextlib.nullcontext():
        for _ in range(task.hyper.epochs):
            total, seen = 0.0, 0
            for xb, yb in loader:
                trainer.before_step(setup, step, total_steps)
                step += 1
                setup.optimizer.zero_grad(set_to_none=True)
                loss = setup.criterion(setup.module(xb), yb)
                loss.backward()
                setup.optimizer.step()  # DP-SGD: an empty Poisson batch still takes a (noise-only) step
                if len(yb):
                    total, seen = total + loss.item() * len(yb), seen + len(yb)
    result = trainer.finish(setup, task, total / seen if seen else math.nan)
    return privacy.close(result, session) if session is not None else result


def with_state(result: LocalResult, **state: Any) -> LocalResult:
    """``result`` with ``state`` merged into its state."""
    return replace(result, state={**result.state, **state})


class _Shuffled:
    """A fresh ``randperm`` of the data each epoch, split into batches (tensor indexing, no collation)."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, seed: int) -> None:
        self.inputs, self.targets, self.batch_size = inputs, targets, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.targets) / self.batch_size)

    def __iter__(self):
        for batch in torch.randperm(len(self.targets), generator=self.generator).split(self.batch_size):
            yield self.inputs[batch], self.targets[batch]


def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate x/y and copy them once into float32 / int64 tensors."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ConfigurationError(
            f"x has shape {x.shape} and y has shape {y.shape}; pass non-empty x [n, ...] and y [n] with the same n"
        )
    if y.dtype.kind not in "iu" or y.min() < 0:
        raise ConfigurationError(f"y has dtype {y.dtype}; pass non-negative integer labels")
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)
