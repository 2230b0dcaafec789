"""Gradient inversion against exactly what the server saw: DLG, iDLG and Inverting Gradients.

Threat model: an honest-but-curious server. It follows the protocol, knows the model it sent (architecture
and parameters at the round), the clients' training recipe (learning rate, local steps, examples per
client) and the update vector it received: a client's own update under Plaintext, or only a group's decoded
sum or mean under a secure sum. It tries to reconstruct the clients' training inputs and labels from it.

Attacks (each matches the gradient of dummy inputs to the observed one, at the round's parameters):
- ``dlg``: Deep Leakage from Gradients (Zhu, Liu, Han, NeurIPS 2019): L-BFGS on dummy inputs *and* soft
  labels, minimising the squared L2 distance between gradients (divided by ``||g*||^2``, which does not move
  the minimiser but keeps L-BFGS's tolerances meaningful for tiny gradients).
- ``idlg``: improved DLG (Zhao, Mopuri, Bilen, arXiv 2001.02610, 2020): the same with labels fixed by
  ``idlg_labels`` from the last layer's gradient.
- ``inverting_gradients``: Inverting Gradients (Geiping, Bauermeister, Droege, Moeller, NeurIPS 2020): signed
  Adam on dummy inputs (labels from ``idlg_labels``), loss ``1 - cos(g, g*)`` over all layers concatenated
  ``+ tv_weight * TV(x)``, the inputs boxed to the valid normalised pixel range, step decay x0.1 at 3/8,
  5/8 and 7/8 of the iterations, best of ``restarts`` random starts.

What is observed (``InversionTarget``): a gradient of the mean cross-entropy or a FedAvg delta, in
``flatten(model)`` order. A delta of ``local_steps`` SGD steps at rate ``lr`` becomes ``delta / (-lr * local_steps)``:
exact for one step, for several the standard approximation by one average gradient (Geiping et al. Sec. 5). A sum
of ``clients`` updates is divided by ``clients``: with equal batch sizes that is the gradient of the mean loss over
all ``count`` examples, so a secure sum of single-example updates is attacked as one batch (order unidentifiable:
``image_metrics.match_images``). The metrics (PSNR, SSIM, baselines) are explained in ``image_metrics``.

Cost: every step differentiates a gradient (double backward) of a small model. On a machine whose cores are
busy, ``torch.set_num_threads(1)`` runs these tiny graphs an order of magnitude faster or more (measured on
2 busy cores).

Guarantee: none; these are attacks. The reconstructions measure what leaks, they bound nothing.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from secfl.audit.privacy.image_metrics import Normalization, evaluate_reconstruction
from secfl.exceptions import ConfigurationError
from secfl.fl.params import num_params
from secfl.hazmat import wire
from secfl.types import RoundResult, ServerView

__all__ = ["Normalization", "InversionTarget", "InversionResult", "model_gradient", "idlg_labels", "dlg", "idlg",
           "inverting_gradients", "evaluate_reconstruction", "observed_vector", "attack_view", "ATTACKS"]


def _int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer >= {low}")
    return int(value)


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{name}={value!r} is invalid; pass a finite number > 0")
    return float(value)


@dataclass(frozen=True, eq=False)
class InversionTarget:
    """What the attacker attacks: the round's model and the observed update vector.

    Args:
        model: the model the server sent (its current parameters are the round's); never modified.
        observed: float vector ``[num_params(model)]`` in ``flatten(model)`` order.
        input_shape: shape of one input, e.g. ``(1, 8, 8)``; num_classes: number of logits.
        count: examples to reconstruct (all examples behind the vector).
        kind: ``"gradient"`` or ``"delta"`` (needs ``lr``; ``local_steps`` SGD steps).
        clients: how many updates ``observed`` sums (1 for a single update or a decoded group mean).
        normalization: how pixels in [0, 1] were standardised (sets the box and the pixel scale).
    """

    model: nn.Module
    observed: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    count: int = 1
    kind: str = "gradient"
    lr: float | None = None
    local_steps: int = 1
    clients: int = 1
    normalization: Normalization = field(default_factory=Normalization)

    def __post_init__(self) -> None:
        obs, shape = self.observed, self.input_shape
        if not isinstance(self.model, nn.Module) or not isinstance(self.normalization, Normalization):
            raise ConfigurationError("model must be a torch.nn.Module and normalization a Normalization")
        if not isinstance(obs, np.ndarray) or obs.ndim != 1 or obs.dtype.kind != "f" or not np.all(np.isfinite(obs)):
            raise ConfigurationError("observed must be a finite 1-D float numpy array in flatten(model) order")
        if obs.size != num_params(self.model):
            raise ConfigurationError(f"observed has length {obs.size} but the model has {num_params(self.model)} "
                                     "parameters; pass the update of this model (without the pipeline's weight)")
        if not isinstance(shape, tuple) or not shape:
            raise ConfigurationError(f"input_shape={shape!r} is invalid; pass a tuple such as (1, 8, 8)")
        for size in shape:
            _int("input_shape entry", size, 1)
        for name, low in (("num_classes", 2), ("count", 1), ("local_steps", 1), ("clients", 1)):
            _int(name, getattr(self, name), low)
        if self.kind not in ("gradient", "delta"):
            raise ConfigurationError(f"kind={self.kind!r} is unknown; choose 'gradient' or 'delta'")
        if self.kind == "delta":
            _positive("lr", self.lr)
        try:
            with torch.no_grad():
                out = self.model(torch.zeros((1, *shape)))
        except RuntimeError as error:
            raise ConfigurationError(f"the model does not accept inputs of shape {shape}: {error}") from None
        if tuple(out.shape) != (1, self.num_classes):
            raise ConfigurationError(f"the model outputs shape {tuple(out.shape)}, not (1, {self.num_classes})")

    def gradient(self) -> np.ndarray:
        """The estimated gradient of the mean loss over the ``count`` examples (float64, flatten order)."""
        g = self.observed.astype(np.float64) / self.clients
        return g if self.kind == "gradient" else g / (-self.lr * self.local_steps)


@dataclass(frozen=True)
class InversionResult:
    """A reconstruction: ``inputs`` [k, *input_shape] (normalised), ``pixels`` (the same clipped to [0, 1]),
    ``labels`` int64 [k], the final matching ``loss``, the ``iterations`` run, and ``seconds`` taken."""

    method: str
    inputs: np.ndarray
    pixels: np.ndarray
    labels: np.ndarray
    loss: float
    iterations: int
    seconds: float
    normalization: Normalization


def model_gradient(model: nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The gradient of the mean cross-entropy of ``model`` on ``(x, y)``, float32 in ``flatten`` order."""
    work = copy.deepcopy(model)
    loss = functional.cross_entropy(work(torch.as_tensor(x, dtype=torch.float32)), torch.as_tensor(y).long())
    grads = torch.autograd.grad(loss, list(work.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]).numpy().astype(np.float32)


def _last_layer(model: nn.Module, gradient: np.ndarray) -> tuple[np.ndarray, bool]:
    """The observed gradient of the last Linear layer's bias (True) or its weight-row sums (False)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigurationError("label inference needs a model whose last layer is nn.Linear")
    last, offset, slices = linears[-1], 0, {}
    for param in model.parameters():
        slices[id(param)] = gradient[offset: offset + param.numel()]
        offset += param.numel()
    if last.bias is not None:
        return np.asarray(slices[id(last.bias)], dtype=np.float64), True
    return np.asarray(slices[id(last.weight)], dtype=np.float64).reshape(last.weight.shape).sum(axis=1), False


def idlg_labels(model: nn.Module, observed_gradient: np.ndarray, count: int) -> np.ndarray:
    """Infer ``count`` labels from the last layer's gradient (of the mean loss over ``count`` examples).

    With cross-entropy, the bias gradient of class c is ``mean_i(p_ic) - n_c / count`` where ``n_c`` is how
    many examples have label c: only labels present can be negative. One example: its label is the one
    negative entry (iDLG, exact). Several: greedily take the most negative entry and add ``1 / count`` to it
    (one occurrence accounted for), ``count`` times; with distinct labels this returns exactly the negative
    entries (the count-most-negative rule of Yin et al. CVPR'21), repeated labels are estimated as in
    Wainakh et al. (PETS 2022). Without a bias, weight-row sums are used (their sign is the bias's when the
    last layer's inputs are non-negative, as after ReLU), and the ``count`` most negative rows are returned.

    Returns:
        int64 labels [count], sorted.
    """
    count = _int("count", count, 1)
    values, has_bias = _last_layer(model, np.asarray(observed_gradient, dtype=np.float64))
    if not has_bias:
        if count > values.size:
            raise ConfigurationError(f"count={count} exceeds the {values.size} classes; needs a last-layer bias")
        return np.sort(np.argsort(values, kind="stable")[:count]).astype(np.int64)
    labels, work = [], values.copy()
    for _ in range(count):
        c = int(np.argmin(work))
        labels.append(c)
        work[c] += 1.0 / count
    return np.sort(np.asarray(labels, dtype=np.int64))


class _Matcher:
    """Gradients of dummy data at the round's parameters, and the observed gradient split per parameter."""

    def __init__(self, target: InversionTarget) -> None:
        self.target = target
        self.model = copy.deepcopy(target.model)
        self.params = [p.requires_grad_(True) for p in self.model.parameters()]
        flat = torch.as_tensor(target.gradient(), dtype=torch.float32)
        self.observed = [o.view_as(p) for o, p in zip(torch.split(flat, [p.numel() for p in self.params]), self.params)]
        self.norm2 = float(sum((o * o).sum() for o in self.observed))
        if not self.norm2 > 0:
            raise ConfigurationError("the observed update is zero: there is nothing to invert")

    def grads(self, x: torch.Tensor, soft_labels: torch.Tensor) -> list[torch.Tensor]:
        loss = -(soft_labels * functional.log_softmax(self.model(x), dim=1)).sum(dim=1).mean()
        return list(torch.autograd.grad(loss, self.params, create_graph=True))

    def l2(self, grads: list[torch.Tensor]) -> torch.Tensor:
        return sum(((g - o) ** 2).sum() for g, o in zip(grads, self.observed)) / self.norm2

    def cosine(self, grads: list[torch.Tensor]) -> torch.Tensor:
        dot = sum((g * o).sum() for g, o in zip(grads, self.observed))
        norm = torch.sqrt(sum((g * g).sum() for g in grads)) * math.sqrt(self.norm2)
        return 1.0 - dot / (norm + 1e-12)

    def init(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((self.target.count, *self.target.input_shape), generator=generator).requires_grad_(True)

    def result(self, method: str, x: torch.Tensor, labels: np.ndarray, loss: float, iterations: int,
               start: float) -> InversionResult:
        inputs = x.detach().numpy().astype(np.float32)
        pixels = np.clip(self.target.normalization.to_pixels(inputs), 0.0, 1.0).astype(np.float32)
        return InversionResult(method, inputs, pixels, np.asarray(labels, dtype=np.int64), float(loss), iterations,
                               time.perf_counter() - start, self.target.normalization)


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    if x.ndim < 4:
        return x.new_zeros(())
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def _lbfgs(target: InversionTarget, *, iterations: int, lr: float, seed: int, learn_labels: bool,
           method: str) -> InversionResult:
    """L-BFGS as in DLG's code (fixed step ``lr``, no line search) in chunks of 20 iterations, keeping the best
    point: a chunk that does not improve (a ReLU kink, or divergence to NaN) restores it and drops the history;
    two in a row end the run."""
    start, matcher = time.perf_counter(), _Matcher(target)
    iterations, lr = _int("iterations", iterations, 1), _positive("lr", lr)
    generator = torch.Generator().manual_seed(_int("seed", seed, 0))
    variables = [matcher.init(generator)]
    if learn_labels:
        variables.append(torch.randn((target.count, target.num_classes), generator=generator).requires_grad_(True))
    else:
        fixed = idlg_labels(target.model, target.gradient(), target.count)
        onehot = functional.one_hot(torch.as_tensor(fixed), target.num_classes).float()

    def objective() -> torch.Tensor:
        soft = functional.softmax(variables[1], dim=1) if learn_labels else onehot
        return matcher.l2(matcher.grads(variables[0], soft))

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        (loss := objective()).backward()
        return loss

    best, ran, stalls, optimizer = (math.inf, [v.detach().clone() for v in variables]), 0, 0, None
    while ran < iterations and stalls < 2 and best[0] > 0:
        if optimizer is None:
            optimizer = torch.optim.LBFGS(variables, lr=lr, max_iter=20, history_size=100,
                                          tolerance_grad=1e-12, tolerance_change=1e-14)
        optimizer.param_groups[0]["max_iter"] = min(20, iterations - ran)
        before = optimizer.state[variables[0]].get("n_iter", 0)
        optimizer.step(closure)
        ran += max(1, optimizer.state[variables[0]].get("n_iter", 0) - before)
        loss = float(objective().detach())
        if math.isfinite(loss) and loss < best[0] * (1 - 1e-4):
            best, stalls = (loss, [v.detach().clone() for v in variables]), 0
        else:
            stalls, optimizer = stalls + 1, None
            with torch.no_grad():
                for v, b in zip(variables, best[1]):
                    v.copy_(b)
    x = best[1][0]
    labels = np.sort(best[1][1].argmax(dim=1).numpy()) if learn_labels else fixed
    return matcher.result(method, x, labels, best[0], ran, start)


def dlg(target: InversionTarget, *, iterations: int = 300, lr: float = 1.0, seed: int = 0) -> InversionResult:
    """DLG: L-BFGS on dummy inputs and soft labels (softmax of free logits), squared-L2 gradient distance.

    ``iterations`` caps the L-BFGS iterations (20 per chunk, see ``_lbfgs``); labels are the argmax of the logits.
    """
    return _lbfgs(target, iterations=iterations, lr=lr, seed=seed, learn_labels=True, method="dlg")


def idlg(target: InversionTarget, *, iterations: int = 300, lr: float = 1.0, seed: int = 0) -> InversionResult:
    """iDLG: as ``dlg`` with the labels fixed by ``idlg_labels`` (only the inputs are optimised)."""
    return _lbfgs(target, iterations=iterations, lr=lr, seed=seed, learn_labels=False, method="idlg")


def inverting_gradients(target: InversionTarget, *, iterations: int = 1000, lr: float = 0.1, tv_weight: float = 1e-2,
                        restarts: int = 1, seed: int = 0) -> InversionResult:
    """Inverting Gradients: signed Adam on ``1 - cos(g, g*) + tv_weight * TV(x)``, boxed, step decay; best restart."""
    start, matcher = time.perf_counter(), _Matcher(target)
    iterations, restarts, lr = _int("iterations", iterations, 1), _int("restarts", restarts, 1), _positive("lr", lr)
    if tv_weight != 0:
        tv_weight = _positive("tv_weight", tv_weight)
    generator = torch.Generator().manual_seed(_int("seed", seed, 0))
    labels = idlg_labels(target.model, target.gradient(), target.count)
    onehot = functional.one_hot(torch.as_tensor(labels), target.num_classes).float()
    low, high = target.normalization.box
    milestones = sorted({max(1, int(iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    best: tuple[float, torch.Tensor] | None = None
    for _ in range(restarts):
        x = matcher.init(generator)
        with torch.no_grad():
            x.clamp_(low, high)
        optimizer = torch.optim.Adam([x], lr=lr)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
        for _ in range(iterations):
            optimizer.zero_grad()
            loss = matcher.cosine(matcher.grads(x, onehot)) + tv_weight * _total_variation(x)
            loss.backward()
            x.grad.sign_()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(low, high)
        final = float((matcher.cosine(matcher.grads(x, onehot)) + tv_weight * _total_variation(x)).detach())
        if best is None or final < best[0]:
            best = (final, x.detach().clone())
    return matcher.result("inverting_gradients", best[1], labels, best[0], iterations * restarts, start)


ATTACKS = {"dlg": dlg, "idlg": idlg, "inverting_gradients": inverting_gradients}


def observed_vector(source: np.ndarray | ServerView | RoundResult, *, num_params: int, client: int | None = None,
                    group: int | None = None) -> np.ndarray:
    """What the server saw, as one float32 vector ``[num_params]``.

    - a float vector: taken as is. For a secure sum pass the pipeline's decoded output, e.g.
      ``RoundOutput.group_means[g]`` (a mean: ``clients=1``) or ``group_means[g] * group_weights[g]`` (a sum).
    - a ``ServerView`` (or ``RoundResult``) of the Plaintext protocol and ``client=``: that client's message.
    - a ``RoundResult`` and ``group=``, if its sums are floats (no ring stage): the group's weighted mean.

    A vector of length ``num_params + 1`` is the pipeline's ``[r x, r]`` (or ``[sum r x, sum r]``) layout and is
    divided by its last coordinate.

    Raises:
        ConfigurationError: another protocol's view (its messages are masked or encrypted), ring words
            (decode them with the pipeline's stages first), an unknown client or group, or a length mismatch.
        MalformedMessageError: a Plaintext message that does not parse.
    """
    if group is not None:
        ok = isinstance(source, RoundResult) and isinstance(group, int) and 0 <= group < len(source.sums)
        if not ok or source.sums.dtype.kind != "f":
            raise ConfigurationError(f"group={group!r} needs a RoundResult with float sums and a valid index; for "
                                     "ring sums pass the decoded RoundOutput.group_means[g] as a vector")
        source = np.asarray(source.sums[group])
    if not isinstance(source, np.ndarray):
        view = source.view if isinstance(source, RoundResult) else source
        if not isinstance(view, ServerView):
            raise ConfigurationError(f"source is a {type(source).__name__}; pass a vector, ServerView or RoundResult")
        if view.protocol != "plaintext":
            raise ConfigurationError(f"the {view.protocol!r} view holds no individual update; attack a group's "
                                     "decoded sum instead (RoundOutput.group_means[g], passed as a vector)")
        if client not in view.received:
            raise ConfigurationError(f"client={client!r} sent nothing; choose one of {sorted(view.received)}")
        source = wire.decode_vector(view.received[client][0])
    if source.dtype.kind != "f":
        raise ConfigurationError("the vector holds ring words; decode them with the pipeline's stages first")
    v = source.astype(np.float64).reshape(-1)
    if v.size == num_params + 1:
        if not (np.isfinite(v[-1]) and v[-1] > 0):
            raise ConfigurationError(f"the weight coordinate is {v[-1]!r}, not > 0")
        v = v[:-1] / v[-1]
    if v.size != num_params:
        raise ConfigurationError(f"the observed vector has length {v.size}; the model has {num_params} parameters")
    return v.astype(np.float32)


def attack_view(source: np.ndarray | ServerView | RoundResult, model: nn.Module, *, input_shape: tuple[int, ...],
                num_classes: int, count: int = 1, method: str = "inverting_gradients", client: int | None = None,
                group: int | None = None, kind: str = "gradient", lr: float | None = None, local_steps: int = 1,
                clients: int = 1, normalization: Normalization | None = None, **options) -> InversionResult:
    """Run ``method`` (a key of ``ATTACKS``) on ``observed_vector(source, client=, group=)``.

    ``clients``: how many updates the vector sums (1 for a client's message or a group mean); ``options`` go
    to the attack (``iterations``, ``seed``, ...). Other arguments as ``InversionTarget``.
    """
    if method not in ATTACKS:
        raise ConfigurationError(f"method={method!r} is unknown; choose one of {', '.join(ATTACKS)}")
    vector = observed_vector(source, num_params=num_params(model), client=client, group=group)
    target = InversionTarget(model, vector, tuple(input_shape), num_classes, count=count, kind=kind, lr=lr,
                             local_steps=local_steps, clients=clients, normalization=normalization or Normalization())
    return ATTACKS[method](target, **options)
