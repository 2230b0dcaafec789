"""Aggregation rules over group means, one class per rule: ``rule(vectors, weights=...) -> [d]``.

Pre-aggregators (``StaticClip``, ``AdaptiveClip``, ``NearestNeighborMixing``) map [n, d] -> [n, d]
and go in front of a rule through ``Chain(rule, pre=[...])`` (scenario key ``pre = [...]``).
A third-party rule inherits ``BaseAggregator`` for the defaults of the declared capabilities.
"""

from secfl.aggregators.base import BaseAggregator
from secfl.aggregators.bulyan import Bulyan
from secfl.aggregators.centered_clip import CenteredClip
from secfl.aggregators.chain import Chain
from secfl.aggregators.clip import AdaptiveClip, StaticClip
from secfl.aggregators.dnc import DnC
from secfl.aggregators.ewwa import Ewwa
from secfl.aggregators.fltrust import FLTrust
from secfl.aggregators.geometric_median import GeometricMedian
from secfl.aggregators.krum import Krum
from secfl.aggregators.majority_vote import MajorityVote
from secfl.aggregators.mean import Mean
from secfl.aggregators.median import Median
from secfl.aggregators.multi_krum import MultiKrum
from secfl.aggregators.nnm import NearestNeighborMixing
from secfl.aggregators.trimmed_mean import TrimmedMean

__all__ = [
    "Mean", "Median", "TrimmedMean", "Krum", "MultiKrum", "GeometricMedian", "Bulyan", "CenteredClip", "DnC",
    "FLTrust", "MajorityVote", "NearestNeighborMixing", "StaticClip", "AdaptiveClip", "Ewwa", "Chain", "BaseAggregator",
]
