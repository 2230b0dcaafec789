"""Argument checks shared by secfl's modules: each raises ConfigurationError naming the bad argument.

The bottom layer: this module imports only ``secfl.exceptions``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

from secfl.exceptions import ConfigurationError

__all__ = ["check_int", "check_number"]


def check_int(name: str, value: object, low: int) -> int:
    """Return ``value`` as an int, raising unless it is an integer >= low (a bool is not an integer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigurationError(f"{name}={value!r} is invalid; pass an integer >= {low}")
    return int(value)


def check_number(name: str, value: object, ok: Callable[[float], bool], requirement: str) -> None:
    """Raise unless ``value`` is a finite real number satisfying ``ok`` (``requirement`` says how, in words)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not ok(value):
        raise ConfigurationError(f"{name}={value!r} is invalid; pass a finite number {requirement}")
