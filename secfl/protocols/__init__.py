"""Secure-sum protocols: one sum per group over the survivors, never an individual input."""

from secfl.protocols.plaintext import Plaintext

__all__ = ["Plaintext"]
