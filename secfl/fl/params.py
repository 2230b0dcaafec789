"""Conversion between a torch model's parameters and one flat float32 numpy vector: the torch/numpy boundary."""

from __future__ import annotations

import numpy as np
import torch

from secfl.exceptions import ConfigurationError

__all__ = ["flatten", "num_params", "unflatten"]


def flatten(model: torch.nn.Module) -> np.ndarray:
    """Copy every parameter of ``model``, in ``named_parameters()`` order, into one vector.

    Args:
        model: Any torch module.

    Returns:
        A new float32 array ``[num_params(model)]`` (never a view of the model's storage).
    """
    tensors = [p.detach().reshape(-1).to(torch.float32) for _, p in model.named_parameters()]
    if not tensors:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(tensors).cpu().numpy()


def unflatten(model: torch.nn.Module, vector: np.ndarray) -> None:
    """Overwrite the parameters of ``model`` in place with ``vector`` (the inverse of ``flatten``).

    Args:
        model: The module to write into.
        vector: A finite 1-D floating-point array of length ``num_params(model)``.

    Raises:
        ConfigurationError: ``vector`` is not a 1-D float array of the right length, or is not finite.
    """
    if not isinstance(vector, np.ndarray):
        raise ConfigurationError(f"vector is a {type(vector).__name__}; pass a 1-D float numpy array from flatten()")
    if vector.ndim != 1 or vector.dtype.kind != "f":
        raise ConfigurationError(
            f"vector is a {vector.dtype} array of shape {vector.shape}; pass a 1-D float numpy array from flatten()"
        )
    expected = num_params(model)
    if vector.size != expected:
        raise ConfigurationError(
            f"vector has length {vector.size} but the model has {expected} parameters; "
            f"pass a vector of length {expected}"
        )
    if not np.all(np.isfinite(vector)):
        raise ConfigurationError("vector contains NaN or infinite values; pass a finite vector")
    offset = 0
    with torch.no_grad():
        for _, param in model.named_parameters():
            chunk = vector[offset : offset + param.numel()]
            param.copy_(torch.tensor(chunk).view_as(param))
            offset += param.numel()


def num_params(model: torch.nn.Module) -> int:
    """Return the number of scalar parameters of ``model`` (the length of ``flatten(model)``)."""
    return sum(p.numel() for _, p in model.named_parameters())
