"""secfl's secure sum across processes: a client and a server that exchange only bytes, over any transport.

``RemoteClient`` is one client (its long-term identity, the input it contributes, its protocol state, all as
bytes between calls); ``RemoteServer`` runs a round's secure sums through an ``exchange`` callable that
carries requests to clients and brings back the replies of those that answered. The protocol code is the same
state machines the embedded engine runs (``SecAggClient`` / ``SecAggServer``), and the same pipeline stages
encode and decode. The Flower integration (``secfl.integrations.flower``) and the README's multi-process
example are thin transports around these two classes.
"""

from secfl.remote.client import RemoteClient
from secfl.remote.server import RemoteServer

__all__ = ["RemoteClient", "RemoteServer"]
