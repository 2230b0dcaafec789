"""Attacks. Update attacks are omniscient: ``attack(honest [n_h, d], num_byzantine=f, rng=...) -> [f, d]``.

Build one from a scenario table with ``build_attack({"kind": "alie", "z": 1.5})``; ``UPDATE_ATTACKS``
maps every kind to its class. ``Adaptive`` line-searches a base attack's strength against the aggregator
passed as ``aggregator=`` (at most ``budget`` aggregator calls per round).
"""

from secfl.attacks.adaptive import Adaptive, SearchResult
from secfl.attacks.alie import ALittleIsEnough, alie_z
from secfl.attacks.base import UpdateAttack
from secfl.attacks.gaussian import GaussianAttack
from secfl.attacks.ipm import InnerProductManipulation
from secfl.attacks.large_norm import LargeNorm
from secfl.attacks.logit_target import TargetedLogits
from secfl.attacks.mimic import Mimic
from secfl.attacks.min_max import MinMax, MinSum
from secfl.attacks.registry import UPDATE_ATTACKS, build_attack
from secfl.attacks.sign_flip import SignFlip

__all__ = [
    "UpdateAttack", "SignFlip", "GaussianAttack", "ALittleIsEnough", "InnerProductManipulation", "MinMax", "MinSum",
    "Mimic", "LargeNorm", "TargetedLogits", "Adaptive", "SearchResult", "alie_z", "UPDATE_ATTACKS", "build_attack",
]
