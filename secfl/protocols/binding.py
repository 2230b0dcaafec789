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
from collections.abc import Mapping, Sequence

import numpy as np

from secfl.exceptions import ConfigurationError
from secfl.hazmat import crypto

__all__ = ["model_context"]


def model_context(arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray], *, config: bytes = b"") -> bytes:
    """The 32-byte context of a model given as its parameter arrays (in order, or name -> array: then the
    names count too), with the round configuration the client received (``config``: canonical bytes, e.g.
    the learning rate it is told to use): every name, dtype, shape and value counts, so two models that differ
    anywhere have different contexts. The round is not part of it (the instance binds the round): the same
    model sent again in another round has the same context, and the client's contribution record, keyed on
    it, refuses to contribute a second update computed from it.

    Raises:
        ConfigurationError: not numeric arrays, names that are not strings, or ``config`` not bytes.
    """
    if not isinstance(config, (bytes, bytearray)):
        raise ConfigurationError(f"config must be bytes (a canonical encoding), got {type(config).__name__}")
    named = isinstance(arrays, Mapping)
    items = list(arrays.items()) if named else [("", a) for a in arrays]
    if named and not all(isinstance(name, str) for name, _ in items):
        raise ConfigurationError("model array names must be strings")
    digest = hashlib.sha256(crypto.hkdf_info("secfl-model-context", bytes(config), int(named), len(items)))
    for name, array in items:
        a = np.asarray(array)
        if a.dtype.kind not in "fiub":
            raise ConfigurationError(f"a model array of dtype {a.dtype} cannot be bound; pass numeric arrays")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        digest.update(crypto.hkdf_info(name, a.dtype.str, len(a.shape), *a.shape, a.nbytes))
        digest.update(a.tobytes())
    return digest.digest()
