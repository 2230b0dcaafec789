"""The secfl error hierarchy.

Every error a user can cause is a ``SecflError``. Messages name the parameter, the value and the fix.
Integrity failures (``ProtocolIntegrityError``) are opaque on purpose: they never say which check
failed or carry secret material.
"""

from __future__ import annotations

__all__ = [
    "SecflError",
    "ConfigurationError",
    "IncompatibleStagesError",
    "PrivacyBudgetExceededError",
    "PrivacyAuditError",
    "ProtocolError",
    "InsufficientParticipantsError",
    "ProtocolIntegrityError",
    "MalformedMessageError",
]


class SecflError(Exception):
    """Base class of every error secfl raises on purpose."""


class ConfigurationError(SecflError, ValueError):
    """A bad hyper-parameter or scenario key; raised at construction, before any work."""


class IncompatibleStagesError(ConfigurationError):
    """Components that cannot work together (e.g. a robust rule over too few groups)."""


class PrivacyBudgetExceededError(SecflError):
    """Running further would spend more privacy budget than the run allows."""


class PrivacyAuditError(SecflError):
    """An empirical epsilon lower bound exceeds the claimed epsilon: a bug in the noise or the accounting."""


class ProtocolError(SecflError):
    """A secure-sum round cannot complete."""


class InsufficientParticipantsError(ProtocolError):
    """Fewer participants survived than the round needs: abort, never degrade."""


class ProtocolIntegrityError(ProtocolError):
    """A check of authenticity or consistency failed. Opaque on purpose."""

    def __init__(self, message: str = "protocol integrity check failed") -> None:
        super().__init__(message)


class MalformedMessageError(ProtocolError):
    """Bytes that do not parse as the expected message."""
