"""``UPDATE_ATTACKS`` (name -> class) and ``build_attack`` from a ``{"kind": ..., **options}`` table."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from secfl.attacks.alie import ALittleIsEnough
from secfl.attacks.base import UpdateAttack
from secfl.attacks.gaussian import GaussianAttack
from secfl.attacks.ipm import InnerProductManipulation
from secfl.attacks.large_norm import LargeNorm
from secfl.attacks.logit_target import TargetedLogits
from secfl.attacks.mimic import Mimic
from secfl.attacks.min_max import MinMax, MinSum
from secfl.attacks.sign_flip import SignFlip
from secfl.exceptions import ConfigurationError

UPDATE_ATTACKS: dict[str, type[UpdateAttack]] = {cls.name: cls for cls in (
    SignFlip, GaussianAttack, ALittleIsEnough, InnerProductManipulation, MinMax, MinSum, Mimic, LargeNorm,
    TargetedLogits)}


def register(cls: type[UpdateAttack]) -> type[UpdateAttack]:
    """Add ``cls`` to ``UPDATE_ATTACKS`` under its ``name``: how an attack built on this registry joins it
    (``Adaptive``, which resolves the attack it wraps here, registers itself when ``secfl.attacks`` loads)."""
    UPDATE_ATTACKS[cls.name] = cls
    return cls


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def attack_options(cls: type) -> list[str]:
    """The options (constructor keywords) of an attack class."""
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def build_attack(spec: Mapping[str, Any], *, where: str = "attack") -> UpdateAttack:
    """The update attack described by ``spec``, e.g. ``{"kind": "alie", "z": 1.5}``.

    Raises:
        ConfigurationError: not a table with a 'kind', an unknown kind or option (the message lists the
            valid ones), or a bad option value (from the attack's constructor).
    """
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ConfigurationError(f"{where}: needs a table with a 'kind' key, one of {sorted(UPDATE_ATTACKS)}")
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in UPDATE_ATTACKS:
        raise ConfigurationError(f"{where}: unknown kind {kind!r}{_suggest(str(kind), list(UPDATE_ATTACKS))}; "
                                 f"choose one of {sorted(UPDATE_ATTACKS)}")
    cls = UPDATE_ATTACKS[kind]
    options = {k: v for k, v in spec.items() if k != "kind"}
    allowed = attack_options(cls)
    for key in options:
        if key not in allowed:
            raise ConfigurationError(f"{where}: unknown option {key!r} for kind {kind!r}{_suggest(str(key), allowed)}; "
                                     f"valid options: {allowed}")
    return cls(**options)
