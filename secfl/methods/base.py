"""What a method is: a local trainer, the round hooks it needs, and the scenario table that configures it.

A method is a folder (or module) plus one registry entry (``secfl.registry``, slot ``"method"``). The scenario
names it (``method = "fedbat"``) and configures it in a table of the same name (``[fedbat]``), validated by
the method's ``Options`` model. The engine builds ``Method(scenario, model)`` once per run and asks it for the
trainer and the hooks; it never branches on the method's name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from secfl.hooks import RoundHook
from secfl.training import Trainer

__all__ = ["Method", "MethodOptions"]


class MethodOptions(BaseModel):
    """Base of a method's options table: every key known, every misspelling an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Method:
    """Override ``trainer`` (and ``hooks``, ``check`` as needed); ``Options`` is the scenario table's model."""

    name: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, scenario: Any, model: torch.nn.Module) -> None:
        self.scenario, self.model = scenario, model
        self.options = scenario.method_options()

    @classmethod
    def check(cls, scenario: Any, options: MethodOptions) -> None:
        """Raise ``ValueError`` (a message naming the keys) if the scenario cannot run this method."""

    def trainer(self) -> Trainer:
        raise NotImplementedError

    def hooks(self) -> list[RoundHook]:
        return []

    @classmethod
    def releases(cls, scenario: Any, options: MethodOptions) -> dict[str, tuple[Any, Any, int]]:
        """One-time releases outside the rounds that every client is in, by name: ``(event, server_event,
        times)`` (what the released result reveals, what the server itself saw, and how many times an
        uninterrupted run makes it at most: what ``privacy.target_epsilon`` is calibrated for). The engine
        charges each release every time a hook makes it (``RoundContext.release(name)``), unamplified."""
        return {}

    @classmethod
    def reshapes(cls, scenario: Any, options: MethodOptions) -> bool:
        """True if the vectors clients send are not model deltas (so a server reference update or a fixed
        model-sized canary cannot be compared with them)."""
        return False
