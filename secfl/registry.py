"""Name -> class tables for every pluggable component, and ``build`` from a ``{kind = ...}`` table.

Scenarios name components by ``kind``; the remaining keys are the constructor's keyword arguments.
A key the constructor does not take is an error that names it (and the closest valid key).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from secfl.aggregators import (AdaptiveClip, Bulyan, CenteredClip, DnC, Ewwa, FLTrust, GeometricMedian, Krum,
                               MajorityVote, Mean, Median, MultiKrum, NearestNeighborMixing, StaticClip, TrimmedMean)
from secfl.exceptions import ConfigurationError
from secfl.grouping import Buckets, Individual, OneGroup
from secfl.protocols import HeSum, Plaintext, SecAgg, SecAggPlus
from secfl.stages import (BitPack, DistributedDiscreteGaussian, EwwaContribution, FedBatBits, FedBatPack, GaussianNoise,
                          L2Clip, LowBitQuantize, Quantize, SignBinarize)

STAGES: dict[str, type] = {cls.name: cls for cls in (L2Clip, GaussianNoise, DistributedDiscreteGaussian, Quantize,
                                                     EwwaContribution, SignBinarize, BitPack, LowBitQuantize,
                                                     FedBatPack, FedBatBits)}
PROTOCOLS: dict[str, type] = {cls.name: cls for cls in (Plaintext, SecAgg, SecAggPlus, HeSum)}
GROUPINGS: dict[str, type] = {cls.name: cls for cls in (Individual, OneGroup, Buckets)}
AGGREGATORS: dict[str, type] = {cls.name: cls for cls in (Mean, Median, TrimmedMean, Krum, MultiKrum, GeometricMedian,
                                                          Bulyan, CenteredClip, DnC, FLTrust, MajorityVote, Ewwa)}
PRE_AGGREGATORS: dict[str, type] = {cls.name: cls for cls in (StaticClip, AdaptiveClip, NearestNeighborMixing)}

SLOTS: dict[str, dict[str, type]] = {
    "stage": STAGES, "protocol": PROTOCOLS, "grouping": GROUPINGS, "aggregator": AGGREGATORS, "pre": PRE_AGGREGATORS,
}


def suggest(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1) or [
        c for c in choices if word.startswith(c) or c.startswith(word)
    ][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


# Constructor arguments a scenario may never set: the known-answer test mode of the crypto randomness,
# and FLTrust's reference update (the engine computes it each round from the server's root data).
HIDDEN = frozenset({"self", "randomness", "reference"})


def parameters(cls: type) -> list[str]:
    """The keyword parameters a component's constructor takes (that a scenario may set)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name not in HIDDEN and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def build(slot: str, spec: Mapping[str, Any], *, where: str = "") -> Any:
    """Construct the component of ``slot`` described by ``spec`` (``{"kind": ..., **kwargs}``).

    Raises:
        ConfigurationError: no or unknown kind, an unknown key, or a bad value (from the component).
    """
    table, where = SLOTS[slot], where or slot
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ConfigurationError(f"{where}: needs a table with a 'kind' key, one of {sorted(table)}")
    kind = spec["kind"]
    if kind not in table:
        raise ConfigurationError(f"{where}: unknown kind {kind!r}{suggest(str(kind), list(table))}; "
                                 f"choose one of {sorted(table)}")
    cls, kwargs = table[kind], {k: v for k, v in spec.items() if k != "kind"}
    allowed = parameters(cls)
    for key in kwargs:
        if key not in allowed:
            raise ConfigurationError(f"{where}: unknown key {key!r} for kind {kind!r}{suggest(key, allowed)}; "
                                     f"valid keys: {allowed}")
    signature = inspect.signature(cls.__init__).parameters
    missing = [k for k in allowed if signature[k].default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ConfigurationError(f"{where}: kind {kind!r} needs the key(s) {missing}")
    return cls(**kwargs)
