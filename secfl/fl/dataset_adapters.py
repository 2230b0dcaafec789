"""Reading inputs the user gives as objects (tensors, ``torch.utils.data.Dataset``) or fetches with an opt-in
package (torchvision, Flower Datasets) into NumPy arrays; ``secfl.fl.own_data`` checks and assembles them.

Nothing here downloads unless the caller asks (``download=True``, or Flower Datasets, which reads the Hub);
an optional package that is missing is a ``ConfigurationError`` naming what to install.
"""

from __future__ import annotations

import importlib
import numbers
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from secfl.exceptions import ConfigurationError

__all__ = ["to_numpy", "torch_arrays", "torchvision_arrays", "flower_arrays"]


def to_numpy(source: str, key: str, value: Any) -> np.ndarray:
    """``value`` as an ndarray (a tensor is detached and moved to the CPU), or ConfigurationError."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigurationError(f"{source}: {key} is not a rectangular numeric array ({exc})") from None



def torch_arrays(dataset: Any, *, what: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """Iterate a ``torch.utils.data.Dataset`` (map-style: ``len`` and indexing; or iterable) of
    ``(input, label)`` pairs into stacked inputs and int64 labels. Everything is held in memory at once.

    Raises:
        ConfigurationError: an item that is not a pair, a label that is not an integer, inputs of different
            shapes, or an empty dataset.
    """
    try:
        items: Iterable[Any] = (dataset[i] for i in range(len(dataset)))
    except TypeError:  # an IterableDataset (no len)
        items = iter(dataset)
    xs, ys = [], []
    for i, item in enumerate(items):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise ConfigurationError(f"{what}[{i}] is a {type(item).__name__}; the dataset must yield (input, label) "
                                     "pairs")
        inputs, label = item
        if hasattr(label, "item") and getattr(label, "ndim", None) == 0:  # a 0-d tensor or NumPy scalar
            label = label.item()
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise ConfigurationError(f"{what}[{i}] has label {label!r}; labels must be integers (class indices)")
        array = to_numpy(what, f"{what}[{i}] input", inputs)
        if xs and array.shape != xs[0].shape:
            raise ConfigurationError(f"{what}[{i}] has an input of shape {array.shape} but {what}[0] has "
                                     f"{xs[0].shape}; every input must have the same shape (resize or pad them)")
        xs.append(array)
        ys.append(int(label))
    if not xs:
        raise ConfigurationError(f"{what} is empty")
    if xs[0].ndim == 0:
        raise ConfigurationError(f"{what}[0] has a scalar input; inputs must be arrays (features or images)")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


# --------------------------------------------------------------------------------- opt-in network adapters

def _import(module: str, install: str) -> Any:
    """Import an optional package, or ConfigurationError naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(f"{module.split('.')[0]} is not installed; it is an optional dependency of this "
                                 f"adapter: pip install {install}") from None


def torchvision_arrays(name: str, root: str | os.PathLike[str], *, download: bool = False) -> dict[str, np.ndarray]:
    """The train and test split of a torchvision dataset with a ``train=`` argument (MNIST, FashionMNIST, KMNIST,
    CIFAR10, CIFAR100, ...) as ``x``, ``y``, ``x_test``, ``y_test`` (inputs scaled to [0, 1] by ``ToTensor``).

    Opt-in: needs ``pip install torchvision``; nothing is downloaded unless ``download=True``.
    """
    datasets = _import("torchvision.datasets", "torchvision")
    transforms = _import("torchvision.transforms", "torchvision")
    cls = getattr(datasets, name, None)
    if not isinstance(cls, type):
        raise ConfigurationError(f"torchvision.datasets has no dataset {name!r}, e.g. 'MNIST' or 'CIFAR10'")
    out = {}
    for split, train in (("", True), ("_test", False)):
        try:
            part = cls(root=str(root), train=train, download=download, transform=transforms.ToTensor())
        except TypeError:
            raise ConfigurationError(f"torchvision {name} takes no train= argument; build it yourself and use "
                                     "from_torch_dataset") from None
        except RuntimeError as exc:  # e.g. "Dataset not found. You can use download=True to download it"
            raise ConfigurationError(f"torchvision {name} under {root}: {exc}") from None
        out[f"x{split}"], out[f"y{split}"] = torch_arrays(part, what=f"torchvision {name}")
    return out


def flower_arrays(dataset: str, *, x_key: str = "image", y_key: str = "label", client_key: str | None = None,
                  train_split: str = "train", test_split: str | None = "test",
                  **load_kwargs: Any) -> dict[str, np.ndarray]:
    """A Flower Datasets (Hugging Face Hub) dataset as ``x``, ``y`` (, ``client``, ``x_test``, ``y_test``).

    ``client_key`` names a column of owner ids (e.g. FEMNIST's ``writer_id``; any values, renumbered 0..k-1)
    for ``partition = { kind = "natural" }``. Channels-last images ``[n, h, w, c]`` become ``[n, c, h, w]``.
    Opt-in: needs ``pip install flwr-datasets`` and network access (the Hub); ``load_kwargs`` go to
    ``FederatedDataset`` (e.g. ``subset``).
    """
    flwr_datasets = _import("flwr_datasets", "flwr-datasets")
    fds = flwr_datasets.FederatedDataset(dataset=dataset, partitioners={train_split: 1}, **load_kwargs)

    def columns(split: str) -> Mapping[str, Any]:
        return fds.load_split(split).with_format("numpy")

    train, out = columns(train_split), {}
    out["x"], out["y"] = np.asarray(train[x_key]), np.asarray(train[y_key])
    if client_key is not None:
        out["client"] = np.unique(np.asarray(train[client_key]), return_inverse=True)[1].astype(np.int64)
    if test_split is not None:
        test = columns(test_split)
        out["x_test"], out["y_test"] = np.asarray(test[x_key]), np.asarray(test[y_key])
    for key in ("x", "x_test"):
        if key in out and out[key].ndim == 4:
            out[key] = np.moveaxis(out[key], -1, 1)
    return out
