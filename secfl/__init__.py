"""secfl: privacy-hardened secure aggregation for federated learning.

The curated public API. Submodules: ``secfl.stages``, ``secfl.protocols``, ``secfl.aggregators`` (every
rule), ``secfl.privacy`` (accountant, ledger), ``secfl.fl`` (the embedded engine; your own data in
``secfl.fl.own_data``), ``secfl.attacks`` (update and data attacks), ``secfl.audit`` (the privacy and protocol
audits), ``secfl.experiments`` (suites, ``bench``, ``report``); ``secfl.hazmat`` holds raw primitives and is
not public.
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
]
