"""Secure-sum protocols: one sum per group over the survivors, never an individual input."""

from secfl.protocols.plaintext import Plaintext
from secfl.types import NO_DROPOUTS, DropoutSchedule

__all__ = ["Plaintext", "DropoutSchedule", "NO_DROPOUTS"]
