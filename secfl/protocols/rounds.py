"""Checks of a round's inputs that every secure-sum protocol shares."""

from __future__ import annotations

from collections.abc import Sequence

from secfl.exceptions import ConfigurationError
from secfl.types import Update


def check_round(updates: Sequence[Update], groups: Sequence[Sequence[int]]) -> dict[int, Update]:
    """Validate a round's inputs shared by every protocol; return the updates by client id.

    Raises:
        ConfigurationError: duplicate ids, ragged or mixed-type vectors, a client in no group or
            in two, a group naming an unknown client, or an empty group.
    """
    by_id: dict[int, Update] = {}
    for update in updates:
        if update.client_id in by_id:
            raise ConfigurationError(f"client {update.client_id} sent two updates in one round")
        by_id[update.client_id] = update
    if not by_id:
        raise ConfigurationError("a round needs at least one update")
    first = next(iter(by_id.values())).values
    for update in by_id.values():
        if update.values.shape != first.shape or update.values.dtype != first.dtype:
            raise ConfigurationError(
                f"client {update.client_id} sent shape {update.values.shape} {update.values.dtype}, "
                f"expected {first.shape} {first.dtype}"
            )
    seen: set[int] = set()
    for index, group in enumerate(groups):
        if not group:
            raise ConfigurationError(f"group {index} is empty")
        for cid in group:
            if cid not in by_id:
                raise ConfigurationError(f"group {index} names client {cid}, which sent no update")
            if cid in seen:
                raise ConfigurationError(f"client {cid} is in two groups")
            seen.add(cid)
    missing = sorted(set(by_id) - seen)
    if missing:
        raise ConfigurationError(f"clients {missing} are in no group")
    return by_id
