"""A client-side check of the model the server sent, before the client trains on it.

A secure sum hides one client's update among the others only if the model every client trained on is honest.
A malicious server controls that model. Two published attacks use it (see ``docs/model-check.md``):

* **Imprint / trap-weight modules** (Fowl et al., ICLR 2022, "Robbing the Fed"): a Linear layer whose rows
  all equal one measurement vector ``v`` with biases at quantiles of ``v . x``, a ReLU, then a layer whose
  columns are identical. Unit ``i`` is active on the examples with ``v . x > q_i``; the difference of the
  gradients of two neighbouring rows is the sum of the examples in one quantile bin, often one example, read
  off the gradient SUM of many clients. Secure aggregation does not stop this.
* **Model inconsistency** (Pasquini, Francati, Ateniese, CCS 2022): every client but a target gets a model
  whose update is zero (e.g. all imprint units dead), so the secure sum equals the target's update.

``check_model(model, x, y, options=ModelCheck())`` returns the reasons to refuse the model (empty: it passes).
It looks for the *naive* forms of both attacks; an adaptive server can evade it (``docs/model-check.md`` says
how, with measurements), so it complements, and never replaces, binding the model into the protocol instance
(against inconsistency) and DP noise (against imprints).

The checks, each with its justification:

1. **Near-duplicate weight rows or columns** (imprint structure). For every Linear weight ``[out, in]`` and
   every convolution weight flattened per output channel ``[out, in * k * k]``, the share of rows with a
   near-duplicate (cosine similarity above ``duplicate_cosine``), and the same for columns (a column of a
   layer is how one unit of the layer before feeds it, so identical columns are the "following layer" of an
   imprint). An imprint layer has (nearly) all rows equal: share 1. Rows of an honest layer are drawn
   independently at initialisation (cosine about ``N(0, 1/in)``) and training does not make a large share
   of them parallel (measured in ``benchmarks/model_check_fpr.py``).
2. **Functional duplicates** (imprint structure hidden from check 1). The input of every ReLU (module or
   function) on the client's batch: the share of units whose centered pre-activations are near-identical
   across the batch (correlation above ``activation_correlation``). Units ``v . x - q_i`` correlate exactly
   1 whatever the biases, and also when the server hides differences between rows where the client's data
   are zero (e.g. MNIST's blank border), which check 1 would miss.
3. **Zero gradient** (dead model). The gradient of the cross-entropy on the client's batch: refuse if it is
   zero everywhere (the update would be zero: the client would only serve to hide another client's update),
   if a weight tensor of at least ``min_rows`` rows has an all-zero gradient (a layer cut off from the
   data), or if more than ``max_zero_grad_share`` of all parameters have a zero gradient. Honest models have
   zero gradients only on inputs that are zero in the whole batch and on units that never fire.
4. **Dead ReLU layers** (dead model). The share of units of one ReLU layer never active on the batch
   (for convolutions: at no position of any example). At initialisation a unit is active on about half of
   the examples; a layer where more than ``max_dead_share`` of the units never fire passes no information.

Checks 2 and 4 run only on a client with at least ``min_examples`` examples (on a handful of examples,
unrelated units correlate and honest units miss every example by chance).

Cost: one forward and one backward pass on at most ``max_examples`` examples, plus ``O(rows * dim)`` per
matrix for checks 1 and 2: rows are normalised, sorted along ``projections`` random directions and each row is
compared (exactly) with its ``window`` neighbours in each order. Near-duplicates lie close along every
direction, so a *large* cluster of them (what the thresholds test) forms runs in the sorted order and is
found; a few isolated pairs among many unrelated rows may be missed, which only under-counts a share that is
compared with a large threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.overrides import TorchFunctionMode

from secfl.checks import check_int, check_number
from secfl.exceptions import ConfigurationError

__all__ = ["ModelCheck", "Finding", "check_model", "inspect_model", "near_duplicate_share"]


@dataclass(frozen=True)
class ModelCheck:
    """The thresholds of ``check_model`` (defaults: false-positive rate measured in
    ``benchmarks/model_check_fpr.py``; zero refusals of honest models there).

    Attributes:
        duplicate_cosine: two weight rows (or columns) are near-duplicates above this cosine similarity, in
            (0, 1). An imprint layer's rows have cosine 1; independent random rows of dimension d have about
            ``N(0, 1/d)``.
        max_duplicate_share: refuse a weight matrix in which more than this share of the rows (or of the
            columns) have a near-duplicate, in (0, 1].
        activation_correlation: two ReLU units are functional duplicates when their centered pre-activations
            on the client's batch correlate above this, in (0, 1).
        max_correlated_share: refuse a ReLU layer in which more than this share of units have a functional
            duplicate, in (0, 1].
        max_zero_grad_share: refuse if more than this share of all parameters have a zero gradient on the
            client's batch, in (0, 1].
        max_dead_share: refuse a ReLU layer in which more than this share of the units are never active on
            the client's batch, in (0, 1].
        zero_tol: a gradient entry is zero when its absolute value is at most this (>= 0; 0: exactly zero,
            which is what a dead ReLU gives).
        min_rows: matrices (and ReLU layers) with fewer rows (units) than this are not tested for duplicates
            or dead units (a small layer can have a few similar rows by chance), >= 2.
        min_examples: the ReLU checks (2 and 4) need at least this many examples, >= 2: on n examples two
            unrelated units correlate about ``N(0, 1/n)`` (on 2 examples every pair correlates +-1), and a unit is
            inactive on all of them with probability about ``2^-n``. A client with fewer examples runs checks 1
            and 3 only.
        max_examples: the data checks use at most this many of the client's examples (the first ones), >= 1.
        projections, window: the duplicate search sorts rows along ``projections`` random directions and
            compares each with ``window`` neighbours in each order (both >= 1).
        seed: seed of the random directions (they only choose which pairs are compared exactly).
    """

    duplicate_cosine: float = 0.99
    max_duplicate_share: float = 0.25
    activation_correlation: float = 0.99
    max_correlated_share: float = 0.25
    max_zero_grad_share: float = 0.9
    max_dead_share: float = 0.9
    zero_tol: float = 0.0
    min_rows: int = 8
    min_examples: int = 16
    max_examples: int = 256
    projections: int = 4
    window: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("duplicate_cosine", "activation_correlation"):
            check_number(f"ModelCheck {name}", getattr(self, name), lambda v: 0 < v < 1, "in (0, 1), e.g. 0.99")
        for name in ("max_duplicate_share", "max_correlated_share", "max_zero_grad_share", "max_dead_share"):
            check_number(f"ModelCheck {name}", getattr(self, name), lambda v: 0 < v <= 1, "in (0, 1]")
        check_number("ModelCheck zero_tol", self.zero_tol, lambda v: v >= 0, ">= 0")
        check_int("ModelCheck min_rows", self.min_rows, 2)
        check_int("ModelCheck min_examples", self.min_examples, 2)
        check_int("ModelCheck max_examples", self.max_examples, 1)
        check_int("ModelCheck projections", self.projections, 1)
        check_int("ModelCheck window", self.window, 1)
        check_int("ModelCheck seed", self.seed, 0)


def near_duplicate_share(rows: np.ndarray, threshold: float, *, projections: int = 4, window: int = 8,
                         rng: np.random.Generator | None = None) -> float:
    """The share of ``rows`` (``[n, d]``) that have another row with cosine similarity above ``threshold``.

    ``O(projections * window * n * d)``: each order of the rows along a random direction is scanned and every
    row compared exactly with its ``window`` successors. All-zero rows count as having no duplicate. A large
    cluster of near-duplicates is always found (its rows are contiguous runs along every direction); isolated
    pairs may be missed, so this is a lower bound on the exact share.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2:
        raise ConfigurationError(f"near_duplicate_share: rows must be [n, d], got shape {rows.shape}")
    n = rows.shape[0]
    norms = np.linalg.norm(rows, axis=1)
    live = np.flatnonzero(norms > 0)
    if len(live) < 2:
        return 0.0
    unit = rows[live] / norms[live, None]
    rng = np.random.default_rng(0) if rng is None else rng
    along = unit @ rng.standard_normal((unit.shape[1], projections))
    found = np.zeros(len(live), dtype=bool)
    for j in range(projections):
        order = np.argsort(along[:, j], kind="stable")
        ordered = unit[order]
        for offset in range(1, min(window, len(order) - 1) + 1):
            close = np.einsum("ij,ij->i", ordered[:-offset], ordered[offset:]) > threshold
            found[order[:-offset][close]] = True
            found[order[offset:][close]] = True
    return float(found.sum()) / n


class _ReluInputs(TorchFunctionMode):
    """Records the input of every ReLU of a forward pass (``nn.ReLU``, ``torch.relu``, ``F.relu``, in-place
    or not), in call order: the pre-activations of the units."""

    _RELUS = frozenset({torch.relu, torch.relu_, functional.relu, functional.relu_, torch.Tensor.relu,
                        torch.Tensor.relu_})

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self._RELUS and args and isinstance(args[0], torch.Tensor):
            self.inputs.append(args[0].detach().clone())  # before an in-place ReLU overwrites it
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class Finding:
    """One measured statistic of ``inspect_model``: ``check`` (``duplicate_rows``, ``duplicate_units``,
    ``zero_grad``, ``dead_units``), where it was measured, its ``value`` and the ``limit`` it must not
    exceed, and ``reason``, the refusal message used when it does."""

    check: str
    where: str
    value: float
    limit: float
    reason: str

    @property
    def refused(self) -> bool:
        return self.value > self.limit


def check_model(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                options: ModelCheck | None = None) -> list[str]:
    """The reasons to refuse ``model`` before training it on the client's data ``(x, y)``; empty: it passes.

    ``x``: the client's inputs ``[n, ...]``, ``y``: integer labels ``[n]`` (the first ``options.max_examples``
    are used). The model is not changed (no ``.grad`` is written; its mode is kept). The module docstring
    gives each check and its justification.

    Raises:
        ConfigurationError: ``options`` is not a ``ModelCheck``, or the data are empty or mismatched.
    """
    return [f.reason for f in inspect_model(model, x, y, options=options) if f.refused]


def inspect_model(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, *,
                  options: ModelCheck | None = None) -> list[Finding]:
    """Every statistic ``check_model`` compares with its limit (to measure margins on honest models)."""
    options = ModelCheck() if options is None else options
    if not isinstance(options, ModelCheck):
        raise ConfigurationError(f"check_model options={options!r}: pass a ModelCheck")
    inputs = torch.as_tensor(np.asarray(x)[: options.max_examples], dtype=torch.float32)
    targets = torch.as_tensor(np.asarray(y)[: options.max_examples], dtype=torch.long)
    if len(inputs) == 0 or len(inputs) != len(targets):
        raise ConfigurationError(f"check_model needs a non-empty batch with one label per example, got "
                                 f"{len(inputs)} inputs and {len(targets)} labels")
    rng = np.random.default_rng(options.seed)
    return _weight_structure(model, options, rng) + _data_checks(model, inputs, targets, options, rng)


def _weight_structure(model: nn.Module, options: ModelCheck, rng: np.random.Generator) -> list[Finding]:
    """Check 1: near-duplicate rows or columns in Linear and convolution weights."""
    found = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.modules.conv._ConvNd):
            continue
        weight = module.weight.detach().cpu().double().numpy()
        kind = type(module).__name__
        for what, matrix in (("rows", weight.reshape(weight.shape[0], -1)),
                             ("columns", np.swapaxes(weight, 0, 1).reshape(weight.shape[1], -1))):
            if matrix.shape[0] < options.min_rows:
                continue
            share = near_duplicate_share(matrix, options.duplicate_cosine, projections=options.projections,
                                         window=options.window, rng=rng)
            where = f"{what} of {kind} {name or '<model>'!r}"
            found.append(Finding("duplicate_rows", where, share, options.max_duplicate_share,
                                 f"imprint structure: {share:.0%} of the {matrix.shape[0]} {where} have a "
                                 f"near-duplicate (cosine > {options.duplicate_cosine:g}; limit "
                                 f"{options.max_duplicate_share:.0%})"))
    return found


def _data_checks(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, options: ModelCheck,
                 rng: np.random.Generator) -> list[Finding]:
    """Checks 2-4: one forward and backward pass on the client's batch."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    try:
        with torch.enable_grad(), _ReluInputs() as seen:
            loss = functional.cross_entropy(model(inputs), targets)
    except (RuntimeError, ValueError, IndexError) as error:  # shapes or classes that do not fit the client's data
        return [Finding("runs", "<model>", 1.0, 0.0, f"the model does not run on the client's data "
                                                        f"({type(error).__name__})")]
    grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
    found = []
    if not torch.isfinite(loss):
        found.append(Finding("loss", "<model>", 1.0, 0.0, f"the loss on the client's batch is not finite ({loss})"))
    zero = total = 0
    for (name, param), grad in zip(params, grads, strict=True):
        zeros = param.numel() if grad is None else int((grad.abs() <= options.zero_tol).sum())
        zero, total = zero + zeros, total + param.numel()
        if param.dim() >= 2 and param.shape[0] >= options.min_rows:  # a layer cut off from the data
            found.append(Finding("zero_grad", f"parameter {name!r}", float(zeros == param.numel()), 0.0,
                                 f"dead model: the gradient of {name!r} is zero on the client's batch"))
    if total:
        found.append(Finding("zero_grad", "<model>", float(zero == total), 0.0,
                             "dead model: the gradient on the client's batch is zero: its update would be zero"))
        found.append(Finding("zero_grad", "<model> share", zero / total, options.max_zero_grad_share,
                             f"dead model: {zero / total:.0%} of the {total} parameters have a zero gradient on "
                             f"the client's batch (limit {options.max_zero_grad_share:.0%})"))
    for index, pre in enumerate(seen.inputs if len(inputs) >= options.min_examples else [], 1):
        name = f"#{index}"
        # [samples, units]: a convolution's positions are samples of its channels
        units = pre.reshape(pre.shape[0], -1) if pre.dim() == 2 else pre.transpose(0, 1).reshape(pre.shape[1], -1).T
        if units.shape[1] < options.min_rows:
            continue
        dead = float((units > 0).sum(0).eq(0).double().mean())
        found.append(Finding("dead_units", f"ReLU {name}", dead, options.max_dead_share,
                             f"dead model: {dead:.0%} of the {units.shape[1]} units of ReLU {name} are never "
                             f"active on the client's batch (limit {options.max_dead_share:.0%})"))
        centered = units.double() - units.double().mean(0)
        share = near_duplicate_share(centered.T.numpy(), options.activation_correlation,
                                     projections=options.projections, window=options.window, rng=rng)
        found.append(Finding("duplicate_units", f"ReLU {name}", share, options.max_correlated_share,
                             f"imprint structure: {share:.0%} of the {units.shape[1]} units of ReLU {name} have "
                             f"a duplicate on the client's batch (pre-activation correlation > "
                             f"{options.activation_correlation:g}; limit {options.max_correlated_share:.0%})"))
    return found
