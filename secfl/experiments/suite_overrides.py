"""``secfl bench --set/--seed``: a suite with scenario keys set in every cell, or with other seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from secfl.exceptions import ConfigurationError
from secfl.experiments.suite import SEED_AXIS, Joint, Suite
from secfl.overrides import apply_overrides, parse_override

__all__ = ["with_overrides"]


def with_overrides(suite: Suite, sets: Sequence[str] = (), seeds: Sequence[int] = ()) -> Suite:
    """``suite`` with ``--set KEY=VALUE`` applied to its base scenario (every cell) and, if ``seeds`` are given,
    its ``run.seed`` axis replaced by them (added if it had none).

    Raises:
        ConfigurationError: a malformed ``--set``, or one that sets a key the grid varies.
    """
    axes = {k for k, _ in suite.grid} | {p for _, v in suite.grid for j in v if isinstance(j, Joint) for p in j.values}
    for text in sets:
        key = ".".join(parse_override(text)[0])
        clash = next((a for a in axes if a == key or a.startswith(key + ".") or key.startswith(a + ".")), None)
        if clash is not None:
            raise ConfigurationError(f"--set {text!r}: {clash!r} is an axis of suite {suite.name!r}; a --set applies "
                                     "to every cell, so change the axis in the suite file instead")
    grid = list(suite.grid)
    if seeds:
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ConfigurationError(f"--seed {list(seeds)}: give distinct integers >= 0")
        grid = [(k, v) for k, v in grid if k != SEED_AXIS] + [(SEED_AXIS, list(seeds))]
    return replace(suite, base=apply_overrides(suite.base, sets), grid=grid)
