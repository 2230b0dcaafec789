"""Secure-sum protocols: one sum per group over the survivors, never an individual input."""

from secfl.protocols.directory import KeyDirectory
from secfl.protocols.he import HeSum
from secfl.protocols.plaintext import Plaintext
from secfl.protocols.secagg import SecAgg, SecAggPlus
from secfl.types import NO_DROPOUTS, DropoutSchedule

__all__ = ["Plaintext", "SecAgg", "SecAggPlus", "HeSum", "KeyDirectory", "DropoutSchedule", "NO_DROPOUTS"]
