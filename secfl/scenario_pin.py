"""A scenario's canonical text and its digest: what a server sends its nodes, and what a node pins.

A node that pins the digest (``secfl digest SCENARIO.toml``, then the node's config) takes only that
scenario, so a server cannot weaken the noise, the group sizes or the protocol it runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_text", "digest"]


def canonical_text(spec: Any) -> str:
    """The scenario as JSON with every default filled in and a noise multiplier solved for its target epsilon
    (the nodes build their pipeline from it)."""
    return json.dumps(spec.with_noise_solved().resolved())


def digest(text: str) -> str:
    """The SHA-256 (hex) of a scenario's canonical text."""
    return hashlib.sha256(text.encode()).hexdigest()
