"""Drive SecAgg clients and server by hand, so tests can play a malicious server between stages."""

import os

import numpy as np

from secfl.protocols import SecAgg
from secfl.protocols import secagg_messages as m
from secfl.protocols.secagg_client import SecAggClient
from secfl.protocols.secagg_server import SecAggServer

STEPS = [
    ("share_keys", SecAggClient.share_keys, SecAggServer.receive_shares),
    ("masked_input", SecAggClient.masked_input, SecAggServer.receive_masked),
    ("consistency_check", SecAggClient.consistency_check, SecAggServer.receive_consistency),
    ("unmask", SecAggClient.unmask, SecAggServer.receive_unmask),
]


class Round:
    """n clients with random uint32 inputs, one honest server, stepped one stage at a time."""

    def __init__(self, n=5, d=8, protocol=None, seed=0, session=None, round_=1):
        self.protocol = protocol or SecAgg()
        self.header = m.Header(session or os.urandom(16), round_, 0, m.SERVER, m.SERVER)
        self.params = self.protocol.params(n)
        rng = np.random.default_rng(seed)
        self.inputs = {c: rng.integers(0, 2**20, size=d).astype(np.uint32) for c in range(n)}
        self.clients = {
            c: SecAggClient(c, header=self.header, params=self.params, values=self.inputs[c],
                            signing_key=self.protocol.identity(c), directory=self.protocol.directory)
            for c in range(n)
        }
        self.server = SecAggServer(header=self.header, members=list(range(n)), params=self.params,
                                   directory=self.protocol.directory, length=d, dtype=np.uint32)
        self.sent = {c: client.advertise_keys() for c, client in self.clients.items()}
        self.replies = self.server.receive_advertise(self.sent)
        self.done = []

    def step(self, skip=()):
        """Run the next stage; clients in ``skip`` stay silent. Returns the server's output."""
        stage, client_step, server_step = STEPS[len(self.done)]
        self.sent = {c: client_step(self.clients[c], r) for c, r in self.replies.items() if c not in skip}
        self.replies = server_step(self.server, self.sent)
        self.done.append(stage)
        return self.replies

    def until(self, stage):
        while STEPS[len(self.done)][0] != stage:
            self.step()
        return self.replies

    def to(self, client):
        return m.Header(self.header.session, self.header.round, self.header.group, m.SERVER, client)
