"""The durable record of which inputs a client has already contributed to a secure sum.

Threat model: the server picks session ids, rounds, groups and rosters. If it could get one input
into two released sums over overlapping sets (a "retry" of the same context, a fresh session with
another roster), it would learn the difference of the sums, down to one client's input. So a client
contributes a given input to at most one protocol instance, ever: before the masked input leaves
the client, its input key (a digest of what the input depends on: the task, the round and the model
it was trained from) is written here, durably (flush + fsync), and a key already present is refused.

A record kept in memory (``path=None``) lasts as long as the client object; a file-backed record
survives restarts. A restarted client that lost its file cannot know what it sent: it must not
contribute any input derived from a model it may already have trained on (see SPEC.md, section
"one contribution per input"). A torn last line (a crash in the middle of a write) is ignored: the
masked input is sent only after the write completed, so that key never left the client.
"""

from __future__ import annotations

import os
from pathlib import Path

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError

KEY_BYTES = 32


class ContributionRecord:
    """Input keys already contributed; ``spend`` refuses a key a second time."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._spent: set[bytes] = set()
        if self.path is not None and self.path.exists():
            if not self.path.is_file():
                raise ConfigurationError(f"{self.path} is not a file; give the record a file path")
            self._load(self.path)

    def _load(self, path: Path) -> None:
        try:
            text = path.read_bytes().decode("ascii", errors="replace")
        except OSError as error:
            raise ConfigurationError(f"cannot read the contribution record {path}: {error.strerror}") from None
        lines = text.split("\n")
        for number, line in enumerate(lines[:-1], 1):  # the last piece has no newline: torn or empty
            try:
                key = bytes.fromhex(line)
            except ValueError:
                key = b""
            if len(key) != KEY_BYTES:
                raise ConfigurationError(f"{path}: line {number} is not a {KEY_BYTES}-byte hex key; the record is damaged")
            self._spent.add(key)

    def __contains__(self, key: object) -> bool:
        return key in self._spent

    def __len__(self) -> int:
        return len(self._spent)

    def spend(self, key: bytes) -> None:
        """Record ``key`` as contributed, durably, or refuse it if it already was.

        Raises:
            ProtocolIntegrityError: the key was contributed before (opaque on purpose).
            ConfigurationError: a key that is not 32 bytes.
        """
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ConfigurationError(f"an input key is {KEY_BYTES} bytes; derive it with input_key(...)")
        if key in self._spent:
            raise ProtocolIntegrityError()
        if self.path is not None:
            with open(self.path, "ab") as out:
                out.write(key.hex().encode("ascii") + b"\n")
                out.flush()
                os.fsync(out.fileno())
        self._spent.add(key)
