"""KeyDirectory: the long-term Ed25519 public keys of clients, standing in for a PKI.

Threat model: the directory is trusted (as a PKI would be); the server cannot add or swap entries.
Clients verify every advertised round key and every survivor-list signature against it.
"""

from __future__ import annotations

from collections.abc import Mapping

from secfl.exceptions import ConfigurationError, ProtocolIntegrityError
from secfl.hazmat import crypto
from secfl.hazmat.randomness import OS_RANDOM, Randomness

PUBLIC_KEY_BYTES = 32


class KeyDirectory:
    """Client id -> long-term Ed25519 public key (32 bytes)."""

    def __init__(self, keys: Mapping[int, bytes] | None = None) -> None:
        self._keys: dict[int, bytes] = {}
        for client, key in (keys or {}).items():
            self.register(client, key)

    def register(self, client: int, public_key: bytes) -> None:
        """Add a client's key; re-registering a different key for the same id is refused."""
        if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_BYTES:
            raise ConfigurationError(f"client {client}: an Ed25519 public key is {PUBLIC_KEY_BYTES} bytes")
        if self._keys.get(client, public_key) != public_key:
            raise ConfigurationError(f"client {client} already has another key in the directory")
        self._keys[client] = public_key

    def public_key(self, client: int) -> bytes:
        """The key of ``client``; an unknown id (e.g. a Sybil made up by the server) fails integrity."""
        try:
            return self._keys[client]
        except KeyError:
            raise ProtocolIntegrityError() from None

    def __contains__(self, client: object) -> bool:
        return client in self._keys


class Identities:
    """The long-term Ed25519 signing keys of simulated clients, made and registered on first use.

    A simulation convenience: in a deployment each client holds only its own key.
    """

    def __init__(self, directory: KeyDirectory, randomness: Randomness = OS_RANDOM) -> None:
        self.directory, self.randomness = directory, randomness
        self._signing: dict[int, bytes] = {}

    def signing_key(self, client: int) -> bytes:
        """The signing key of ``client`` (its public key goes into the directory)."""
        if client not in self._signing:
            private, public = crypto.ed25519_keypair(self.randomness)
            self.directory.register(client, public)
            self._signing[client] = private
        return self._signing[client]
