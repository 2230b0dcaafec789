"""secfl: privacy-hardened secure aggregation for federated learning.

The curated public API. Submodules: ``secfl.stages``, ``secfl.protocols``, ``secfl.aggregators`` (every
rule), ``secfl.privacy`` (accountant, ledger), ``secfl.fl`` (the embedded engine; your own data in
``secfl.fl.own_data``), ``secfl.attacks`` (update and data attacks), ``secfl.audit`` (the privacy and protocol
audits), ``secfl.experiments`` (suites, ``bench``, ``report``); ``secfl.hazmat`` holds raw primitives and is
not public.

Your own loop or transport: ``RemoteClient`` / ``RemoteServer`` (``secfl.remote``) run the secure sum between
processes that exchange only bytes; ``flatten`` / ``unflatten`` / ``num_params`` (``secfl.fl.params``) turn a
torch model into the float vector they sum and back (loaded on first use, so ``import secfl`` stays torch-free);
``model_context`` binds a sum to the model each client received (``secfl.protocols.binding``).
"""

from secfl.aggregators import Chain, Krum, Mean, Median, TrimmedMean
from secfl.exceptions import (
    ConfigurationError,
    IncompatibleStagesError,
    InsufficientParticipantsError,
    MalformedMessageError,
    PrivacyAuditError,
    PrivacyBudgetExceededError,
    ProtocolError,
    ProtocolIntegrityError,
    SecflError,
)
from secfl.fl.data import Dataset, load_dataset
from secfl.fl.own_data import from_arrays, from_flower, from_torch_dataset, from_torchvision, load_npz
from secfl.grouping import Buckets, Edges, Individual, OneGroup
from secfl.pipeline import Pipeline, RoundOutput
from secfl.protocols import KeyDirectory, Plaintext, SecAgg, SecAggPlus
from secfl.protocols.binding import model_context
from secfl.remote import RemoteClient, RemoteServer
from secfl.privacy import Accountant
from secfl.stages import DistributedDiscreteGaussian, GaussianNoise, L2Clip, Quantize
from secfl.types import NO_DROPOUTS, Bounds, DropoutSchedule, RoundResult, ServerView, Update

__version__ = "0.1.0"

__all__ = [
    "Pipeline", "RoundOutput", "Update", "Bounds", "DropoutSchedule", "NO_DROPOUTS", "RoundResult", "ServerView",
    "L2Clip", "GaussianNoise", "DistributedDiscreteGaussian", "Quantize", "Plaintext", "SecAgg", "SecAggPlus",
    "KeyDirectory", "Individual", "OneGroup", "Buckets", "Edges", "Mean", "Median", "TrimmedMean", "Krum", "Chain", "Accountant",
    "SecflError", "ConfigurationError", "IncompatibleStagesError", "PrivacyBudgetExceededError", "PrivacyAuditError", "ProtocolError",
    "InsufficientParticipantsError", "ProtocolIntegrityError", "MalformedMessageError",
    "Dataset", "load_dataset", "from_arrays", "from_torch_dataset", "load_npz", "from_torchvision", "from_flower",
    "RemoteClient", "RemoteServer", "flatten", "unflatten", "num_params", "model_context",
]

_LAZY = {"flatten": "secfl.fl.params", "unflatten": "secfl.fl.params", "num_params": "secfl.fl.params"}


def __getattr__(name: str) -> object:
    """The torch helpers of ``_LAZY``, imported on first access (``import secfl`` does not load torch)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'secfl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
