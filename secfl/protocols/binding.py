"""The model binding: a digest of the model (and round configuration) a client trained on, bound into the
secure sum's instance.

Threat model: the server chooses the model each client receives. In the model-inconsistency attack it
sends one target the real model and every other member of the group a model whose update is zero (or
known), so the group's sum is the target's update. Each client computes ``model_context`` of what IT
received and binds it into the SecAgg/SecAgg+ instance (``Instance.context``): members that received
different models have different instance digests, cannot verify each other's messages, and cannot
complete one instance together. What this does not stop: one common crafted model sent to everyone
(trap weights / imprint layers); that needs noise (DP) or a client-side model check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat import crypto

__all__ = ["model_context"]


def model_context(arrays: Sequence[np.ndarray], round_: int, config: bytes = b"") -> bytes:
    """The 32-byte context of a model given as its parameter arrays (in order), for round ``round_``, with
    any round configuration the client received (``config``, canonical bytes): every dtype, shape and value
    counts, so two models that differ anywhere have different contexts.

    Raises:
        ConfigurationError: ``arrays`` is not a sequence of numeric arrays, or ``round_`` is not an int >= 0.
    """
    if isinstance(round_, bool) or not isinstance(round_, int) or round_ < 0:
        raise ConfigurationError(f"round_={round_!r} must be an int >= 0")
    digest = hashlib.sha256(crypto.hkdf_info("secfl-model-context", round_, bytes(config), len(arrays)))
    for array in arrays:
        a = np.asarray(array)
        if a.dtype.kind not in "fiub":
            raise ConfigurationError(f"a model array of dtype {a.dtype} cannot be bound; pass numeric arrays")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        digest.update(crypto.hkdf_info(a.dtype.str, len(a.shape), *a.shape))
        digest.update(a.tobytes())
    return digest.digest()
