"""The one registry: name -> component for every slot a scenario can name, and ``build`` from a ``{kind = ...}`` table.

Slots: ``stage``, ``protocol``, ``grouping``, ``aggregator``, ``pre`` (pre-aggregators), ``attack`` (update
attacks; the data attacks ``label_flip``/``backdoor`` are listed too), ``method``, ``dataset``, ``model`` and
``partition``. Scenarios name components by ``kind``; the remaining keys are the constructor's keyword
arguments. A key the constructor does not take is an error that names it (and the closest valid key).
``register(slot, name, obj)`` adds a component (e.g. a method defined in your own module); an entry may be a
``"module:attribute"`` string, imported on first use (methods are, so ``secfl list`` stays fast). A dataset
entry is a loader ``(seed=, test_fraction=, **options) -> Dataset`` or a ``Dataset`` (``secfl.fl.data``).
``secfl list`` prints this registry.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from secfl.attacks.byzantine import DATA_ATTACKS
from secfl.attacks.registry import UPDATE_ATTACKS
from secfl.fl.data import LOADERS
from secfl.fl.models import MODELS
from secfl.fl.partition import PARTITIONS
from secfl.aggregators import (AdaptiveClip, Bulyan, CenteredClip, DnC, Ewwa, FLTrust, GeometricMedian, Krum,
                               MajorityVote, Mean, Median, MultiKrum, NearestNeighborMixing, StaticClip, TrimmedMean)
from secfl.exceptions import ConfigurationError
from secfl.grouping import Buckets, Edges, Individual, OneGroup
from secfl.protocols import HeSum, Plaintext, SecAgg, SecAggPlus
from secfl.stages import (BitPack, DistributedDiscreteGaussian, EwwaContribution, FedBatBits, FedBatPack, GaussianNoise,
                          L2Clip, LowBitQuantize, Quantize, SignBinarize)

STAGES: dict[str, type] = {cls.name: cls for cls in (L2Clip, GaussianNoise, DistributedDiscreteGaussian, Quantize,
                                                     EwwaContribution, SignBinarize, BitPack, LowBitQuantize,
                                                     FedBatPack, FedBatBits)}
PROTOCOLS: dict[str, type] = {cls.name: cls for cls in (Plaintext, SecAgg, SecAggPlus, HeSum)}
GROUPINGS: dict[str, type] = {cls.name: cls for cls in (Individual, OneGroup, Buckets, Edges)}
AGGREGATORS: dict[str, type] = {cls.name: cls for cls in (Mean, Median, TrimmedMean, Krum, MultiKrum, GeometricMedian,
                                                          Bulyan, CenteredClip, DnC, FLTrust, MajorityVote, Ewwa)}
PRE_AGGREGATORS: dict[str, type] = {cls.name: cls for cls in (StaticClip, AdaptiveClip, NearestNeighborMixing)}

METHODS: dict[str, Any] = {"fedavg": "secfl.methods.fedavg:FedAvg", "fedbat": "secfl.methods.fedbat:FedBat",
                           "autoflip": "secfl.methods.autoflip:AutoFlip", "fedagg": "secfl.methods.fedagg:FedAgg"}

#: Components built by ``build`` from a ``{kind = ...}`` table (their constructor keys are the table's keys).
SLOTS: dict[str, dict[str, Any]] = {
    "stage": STAGES, "protocol": PROTOCOLS, "grouping": GROUPINGS, "aggregator": AGGREGATORS, "pre": PRE_AGGREGATORS,
    "attack": UPDATE_ATTACKS,
}
#: Slots a scenario names without a table of constructor keys (their options have sections of their own).
NAMED: dict[str, dict[str, Any]] = {
    "method": METHODS,
    "attack": {**UPDATE_ATTACKS, **{name: "secfl.attacks.byzantine:Adversary" for name in DATA_ATTACKS}},
    "dataset": LOADERS,  # the very dict secfl.fl.data dispatches on: a loader or a Dataset per name
    "model": {name: "secfl.fl.models:build_model" for name in MODELS},
    "partition": {name: "secfl.fl.partition:partition" for name in PARTITIONS},
}


def names(slot: str) -> list[str]:
    """Every registered name of ``slot``."""
    return list({**SLOTS.get(slot, {}), **NAMED.get(slot, {})})


def register(slot: str, name: str, component: Any) -> None:
    """Add ``component`` (or a ``"module:attribute"`` string) under ``name`` in ``slot``; replaces an entry of
    the same name. Raises ConfigurationError for an unknown slot or a name that is not a plain identifier."""
    if slot not in SLOTS and slot not in NAMED:
        raise ConfigurationError(f"unknown slot {slot!r}; choose one of {sorted({*SLOTS, *NAMED})}")
    if not isinstance(name, str) or not name.replace("_", "").replace("+", "").isalnum():
        raise ConfigurationError(f"component name {name!r}: use letters, digits and '_'")
    for table in (SLOTS.get(slot), NAMED.get(slot)):
        if table is not None:
            table[name] = component


def resolve(slot: str, name: str) -> Any:
    """The component registered as ``name`` in ``slot`` (importing a ``"module:attribute"`` entry).

    Raises ConfigurationError (with the closest name) for an unknown name."""
    table = {**SLOTS.get(slot, {}), **NAMED.get(slot, {})}
    if name not in table:
        raise ConfigurationError(f"unknown {slot} {name!r}{suggest(str(name), list(table))}; "
                                 f"choose one of {sorted(table)}")
    entry = table[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
    return entry


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
