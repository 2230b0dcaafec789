"""Your own loop and transport: secfl's secure sum between separate processes that exchange only bytes.

One server process and 4 client processes (``multiprocessing``, TCP on 127.0.0.1 behind an authkey). The
model (a small CNN defined below) and the training loop are yours; each client trains on its own shard of
sklearn's digits, sends ``flatten(trained) - flatten(global)`` through SecAgg+ (L2 clip, quantize, one group
of 4), and the server adds the weighted mean of the updates to its model with ``unflatten`` and evaluates.
secfl sees float vectors and bytes, nothing else: the loop and the transport are this file's.

Also shown:
- a client keeps nothing in memory between messages: its ``RemoteClient`` is rebuilt from the bytes of
  ``state()`` (a file, rewritten after every call, before the reply leaves);
- client 0's process exits after round 1 and a new process continues from that file (same identity: it
  does not enroll again, and its signed messages still verify);
- client 3 crashes in round 3 before sending its masked input: the round completes without it (a dropout).

The authkey only admits connections; across a real network put the sockets in TLS as well (clients sign their
protocol messages, but the server's requests and the model travel as they are).

Run from the repository root: ``python -m examples.own_loop.run`` (or ``python examples/own_loop/run.py``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import queue
import secrets
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path

import numpy as np
import torch
from torch import nn

from secfl import (L2Clip, OneGroup, Pipeline, ProtocolError, Quantize, RemoteClient, RemoteServer, SecAggPlus,
                   flatten, load_dataset, model_context, num_params, unflatten)

NUM_CLIENTS = 4
EPOCHS, LR, BATCH = 2, 0.05, 32
CLIP = 10.0  # the L2 bound of one client's update (the quantizer's ring is sized from it)
TIMEOUT = 60.0  # seconds a server waits for one reply; a client that does not answer is a dropout
RESTARTS_AFTER = {0: 1}  # client 0's process exits after round 1; a new one continues from its state file
CRASHES_IN = {3: 3}  # client 3 dies in round 3 before its masked input


class SmallCNN(nn.Module):
    """The user's model: nothing secfl-specific."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


def make_pipeline() -> Pipeline:
    """The same pipeline in every process (the protocol's parameters derive from it). A scenario works too:
    ``secfl.scenario.validate({...}).build_pipeline()``."""
    # weight_cap: a public bound on a client's weight (here its example count; the shards hold about 360). Each
    # client weighs itself min(n, cap) / cap inside its masked vector: the server never sees or chooses a weight.
    return Pipeline(clients_per_round=NUM_CLIENTS, stages=[L2Clip(norm=CLIP), Quantize(scale=2**16)],
                    protocol=SecAggPlus(), grouping=OneGroup(), weight_cap=400.0)


def shard(cid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Client ``cid``'s own examples (every process loads the same split; a client keeps only its part)."""
    data = load_dataset("digits", seed=0)
    mine = np.array_split(np.random.default_rng(0).permutation(len(data.y_train)), NUM_CLIENTS)[cid]
    return torch.from_numpy(data.x_train[mine]), torch.from_numpy(data.y_train[mine])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(y)).split(BATCH):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()


def save(path: Path, state: bytes) -> None:
    """Durably replace the client's state (it holds its signing key: keep it where you would keep a key)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(state)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- client process

def client_main(cid: int, address: tuple[str, int], authkey: bytes, state_file: Path) -> None:
    torch.set_num_threads(1)
    pipeline, (x, y) = make_pipeline(), shard(cid)
    conn = Client(address, authkey=authkey)
    if state_file.exists():  # a restart: the identity (signing key) and protocol state come back from bytes
        conn.send_bytes(b"H" + cid.to_bytes(4, "little"))
        print(f"client {cid}: restarted (pid {os.getpid()}), state loaded from {state_file.name}", flush=True)
    else:
        client = RemoteClient(cid, pipeline)  # a fresh Ed25519 identity; the private key never leaves
        save(state_file, client.state())
        conn.send_bytes(b"E" + client.enroll())
    round_, requests = 0, 0
    while True:
        try:
            msg = conn.recv_bytes()
        except (EOFError, OSError):
            return
        tag, body = msg[:1], msg[1:]
        if tag == b"M":  # the global model of a round: train locally, keep the update here
            round_, requests = int.from_bytes(body[:4], "little"), 0
            model = SmallCNN()
            torch.manual_seed(1000 * round_ + cid)  # this client's batch order (reproducible runs)
            unflatten(model, np.frombuffer(body[4:], dtype=np.float32).copy())
            start = flatten(model)
            train(model, x, y)
            client = RemoteClient(cid, pipeline, state=state_file.read_bytes())
            received = np.frombuffer(body[4:], dtype=np.float32)  # bind the sum to the model this client got
            client.set_update(round_, flatten(model) - start, weight=float(len(y)),
                              context=model_context([received]))
            save(state_file, client.state())
            conn.send_bytes(b"trained")  # ready for the round (its weight travels inside the masked vector)
        elif tag == b"P":  # one secure-sum request
            requests += 1
            if CRASHES_IN.get(cid) == round_ and requests == 4:  # open, share_keys, check_shares, masked_input
                print(f"client {cid}: crashing before its masked input (round {round_})", flush=True)
                os._exit(1)
            client = RemoteClient(cid, pipeline, state=state_file.read_bytes())
            try:
                reply = client.handle(body)
            except ProtocolError:  # refused (a bad or replayed request): answer nothing more this round
                reply = b""
            save(state_file, client.state())  # before the reply leaves: it records what was contributed
            conn.send_bytes(reply)
        elif tag == b"R":  # the round is over
            leaving = RESTARTS_AFTER.get(cid) == round_
            conn.send_bytes(b"restart" if leaving else b"ok")
            if leaving:
                return
        else:  # b"Q"
            return


# ---------------------------------------------------------------- server process

def accept_forever(listener: Listener, pending: queue.Queue) -> None:
    while True:
        try:
            conn = listener.accept()
            pending.put((conn, conn.recv_bytes()))
        except (OSError, EOFError, mp.AuthenticationError):
            continue


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def server_main(authkey: bytes, ready: mp.Queue, rounds: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, pipeline, data = SmallCNN(), make_pipeline(), load_dataset("digits", seed=0)
    x_test, y_test = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    server = RemoteServer(pipeline, num_params(model))
    listener = Listener(("127.0.0.1", 0), authkey=authkey)
    pending: queue.Queue = queue.Queue()
    threading.Thread(target=accept_forever, args=(listener, pending), daemon=True).start()
    ready.put(listener.address)
    conns: dict[int, Connection] = {}
    enrolled: set[int] = set()

    def admit(timeout: float) -> None:
        """Take the connections that arrived, until every client is connected or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while len(conns) < NUM_CLIENTS:
            try:
                conn, hello = pending.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            try:
                if hello[:1] == b"E":
                    cid = server.enroll(hello[1:])  # its long-term public key; a second key is refused
                    enrolled.add(cid)
                elif (cid := int.from_bytes(hello[1:5], "little")) not in enrolled:
                    raise ProtocolError("unknown client")
            except ProtocolError:
                conn.close()
                continue
            conns[cid] = conn

    def ask(cid: int, message: bytes) -> bytes | None:
        """One request and its reply; a client that fails or times out is disconnected."""
        try:
            conns[cid].send_bytes(message)
            if conns[cid].poll(TIMEOUT):
                return conns[cid].recv_bytes()
        except (OSError, EOFError, KeyError):
            pass
        conns.pop(cid, None)
        return None

    def exchange(requests: dict[int, bytes]) -> dict[int, bytes]:
        """secfl's transport: carry each request to its client, bring back the replies of those that answered."""
        for cid, request in requests.items():
            try:
                conns[cid].send_bytes(b"P" + request)
            except (OSError, KeyError):
                conns.pop(cid, None)
        replies = {}
        for cid in requests:
            try:
                if conns[cid].poll(TIMEOUT):
                    reply = conns[cid].recv_bytes()
                    if reply:  # empty: the client refused the request
                        replies[cid] = reply
                    continue
            except (OSError, EOFError, KeyError):
                pass
            conns.pop(cid, None)  # crashed or silent: a dropout from this stage on
        return replies

    for round_ in range(1, rounds + 1):
        admit(TIMEOUT)
        start = time.perf_counter()
        weights: dict[int, float] = {}
        vector = flatten(model)
        header = b"M" + round_.to_bytes(4, "little")
        for cid in sorted(conns):
            reply = ask(cid, header + vector.tobytes())
            if reply is not None:
                weights[cid] = 1.0  # the round's members (deployed clients weigh themselves)
        out = server.run_round(round_, weights, rng=np.random.default_rng([0, round_]), exchange=exchange,
                               context=model_context([vector]))
        unflatten(model, (vector + out.aggregate).astype(np.float32))
        summed = sorted(c for group in out.result.survivors for c in group)
        print(f"round {round_}: clients {summed} summed (of {sorted(weights)}), "
              f"test accuracy {evaluate(model, x_test, y_test):.3f} ({time.perf_counter() - start:.1f} s)", flush=True)
        for cid in sorted(conns):
            if ask(cid, b"R") == b"restart":
                conns.pop(cid).close()  # it comes back with a hello at the next admit
    for conn in conns.values():
        conn.send_bytes(b"Q")
    listener.close()


# ---------------------------------------------------------------- launcher

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    # separate processes: nothing is shared but the bytes on the sockets. "forkserver" imports torch and secfl
    # once and forks each process from there (fast); "spawn" (Windows) starts fresh interpreters.
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["torch", "secfl", "secfl.remote", "sklearn.datasets"])
    else:
        ctx = mp.get_context("spawn")
    authkey = secrets.token_bytes(32)
    with tempfile.TemporaryDirectory(prefix="secfl-own-loop-") as tmp:
        ready = ctx.Queue()
        server = ctx.Process(target=server_main, args=(authkey, ready, args.rounds), name="server")
        server.start()
        address = ready.get(timeout=120)

        def start(cid: int) -> mp.Process:
            process = ctx.Process(target=client_main, args=(cid, address, authkey, Path(tmp) / f"client{cid}.state"),
                                  name=f"client{cid}")
            process.start()
            return process

        clients = {cid: start(cid) for cid in range(NUM_CLIENTS)}
        for cid in RESTARTS_AFTER:
            clients[cid].join()  # it exits after its round (or when the server is gone)
            if server.is_alive():
                clients[cid] = start(cid)
        server.join()
        for process in clients.values():
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    return server.exitcode or 0


if __name__ == "__main__":
    sys.exit(main())
