"""TenSEAL parsing of untrusted ciphertexts, in-process or in a worker process with memory and time limits.

Threat model: the bytes come from registered clients, which may be malicious. Before they get here
they have passed every check ``he_messages`` makes (frame, sizes, the client's signature, TenSEAL's
exact protobuf layout and each SEAL header), so outsiders never reach the parser; a malicious
*registered* client still can, with any signed bytes. TenSEAL 0.3.x embeds Microsoft SEAL 4.3,
whose deserializers 4.4 hardened against untrusted input. So the key holder (the process that holds
the round's secret key) does not parse uploads itself: ``sum_isolated`` parses and adds them in a
fresh child of a ``forkserver`` (single-threaded, started once, with TenSEAL preloaded) that holds
only the public context, under ``RLIMIT_AS`` (address space) and ``RLIMIT_CPU`` limits and a
wall-clock timeout. A crash, a limit, a timeout or a refusal in the worker is a
``MalformedMessageError``; it never takes the key holder down or hangs it.

What the worker does not protect against: its output (the serialized sum) is parsed by the key
holder, after the same layout check. An attacker who gains code execution in the worker through a
SEAL bug could shape that output; this is a second bug to chain, and the worker never holds a
secret. Deterministic crashes, memory blow-ups and endless loops are contained.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
import types
from collections.abc import Sequence

import tenseal as ts

from secfl.exceptions import MalformedMessageError

BASE_MEMORY = 1 << 30  # address space allowed beyond what the worker has mapped at start (honest need: ~3 x input)
PER_BYTE_MEMORY = 4  # plus this many bytes of address space per input byte
BASE_SECONDS = 30.0  # wall-clock timeout: this much plus SECONDS_PER_MB per MB of input (honest: ~1 ms per MB)
SECONDS_PER_MB = 0.1
_OK, _REFUSED = b"\x00", b"\x01"
_server: multiprocessing.context.BaseContext | None = None


def parse_vector(context: ts.Context, blob: bytes, *, scheme: str, d: int) -> ts.BFVVector | ts.CKKSVector:
    """TenSEAL's parse of a checked vector blob; anything it refuses, or a length other than d, is malformed."""
    load = ts.bfv_vector_from if scheme == "bfv" else ts.ckks_vector_from
    try:
        vector = load(context, blob)
        size = vector.size()
    except Exception:  # noqa: BLE001 - untrusted bytes: every parse failure is the same refusal
        raise MalformedMessageError("the encrypted vector does not parse") from None
    if size != d:
        raise MalformedMessageError(f"encrypted vector of {size} values, expected {d}")
    return vector


def sum_vectors(context: ts.Context, blobs: Sequence[bytes], *, scheme: str, d: int) -> ts.BFVVector | ts.CKKSVector:
    """Parse each blob against ``context`` and add them (in this process).

    Raises:
        MalformedMessageError: no blob, one that does not parse, or vectors TenSEAL cannot add.
    """
    total = None
    for blob in blobs:
        vector = parse_vector(context, blob, scheme=scheme, d=d)
        try:
            total = vector if total is None else total.add_(vector)
        except Exception:  # noqa: BLE001 - TenSEAL refuses mismatched vectors with assorted errors
            raise MalformedMessageError("encrypted vectors that cannot be added") from None
    if total is None:
        raise MalformedMessageError("no encrypted vector to add")
    return total


def sum_isolated(public_context: bytes, blobs: Sequence[bytes], *, scheme: str, d: int, threads: int = 1,
                 timeout: float | None = None) -> bytes:
    """``sum_vectors`` under the public context, run in a limited worker process; the serialized sum.

    Raises:
        MalformedMessageError: a refusal, a crash, an exceeded memory or CPU limit, or a timeout.
    """
    size = len(public_context) + sum(len(b) for b in blobs)
    timeout = BASE_SECONDS + SECONDS_PER_MB * size / 1e6 if timeout is None else timeout
    parent, child = _context().Pipe()
    worker = _context().Process(target=_work, args=(child, scheme, d, threads, BASE_MEMORY + PER_BYTE_MEMORY * size,
                                                    int(timeout) + 1), daemon=True)
    _start(worker)
    child.close()
    try:
        parent.send_bytes(public_context)
        parent.send_bytes(len(blobs).to_bytes(4, "little"))
        for blob in blobs:
            parent.send_bytes(blob)
        if not parent.poll(timeout):
            raise MalformedMessageError(f"parsing the uploads took over {timeout:.0f} s: refused")
        reply = parent.recv_bytes()
    except (EOFError, OSError):  # the worker died: a crash or a limit
        raise MalformedMessageError("the uploads crashed the parsing worker") from None
    finally:
        parent.close()
        if worker.is_alive():
            worker.kill()
        worker.join()
    if reply[:1] != _OK:
        raise MalformedMessageError("the encrypted vectors do not parse or cannot be added")
    return reply[1:]


def start() -> float:
    """Start the worker server now rather than in the first ``sum_isolated`` (it imports TenSEAL); its seconds."""
    tick = time.perf_counter()
    worker = _context().Process(target=_idle, daemon=True)
    _start(worker)
    worker.join()
    return time.perf_counter() - tick


def _start(worker: multiprocessing.process.BaseProcess) -> None:
    """Start ``worker`` without multiprocessing re-running the caller's ``__main__`` in it.

    A forkserver child imports the parent's main script (as ``__mp_main__``) before running the
    target: slow (a CLI's imports, each time) and wrong for scripts without a ``__main__`` guard.
    The worker needs only this module, so the main module is hidden while the child is prepared.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        worker.start()
    finally:
        sys.modules["__main__"] = main


def _idle() -> None:
    return None


def _context() -> multiprocessing.context.BaseContext:
    """A forkserver (one single-threaded server, TenSEAL preloaded; cheap forks), or spawn where there is none."""
    global _server
    if _server is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _server = multiprocessing.get_context("forkserver")
            _server.set_forkserver_preload([__name__])
        else:  # pragma: no cover - not Linux/macOS
            _server = multiprocessing.get_context("spawn")
    return _server


def _work(conn, scheme: str, d: int, threads: int, extra_memory: int, cpu_seconds: int) -> None:
    """The worker: limits, read everything (so the parent's sends never block on a hung parse), parse and add."""
    mapped = _mapped_bytes()
    if mapped is not None:
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra_memory, mapped + extra_memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    try:
        public = conn.recv_bytes()
        blobs = [conn.recv_bytes() for _ in range(int.from_bytes(conn.recv_bytes(), "little"))]
        context = ts.context_from(public, n_threads=threads)
        reply = _OK + sum_vectors(context, blobs, scheme=scheme, d=d).serialize()
    except Exception:  # noqa: BLE001 - MemoryError, TenSEAL's errors: the same refusal
        reply = _REFUSED
    conn.send_bytes(reply)
    conn.close()


def _mapped_bytes() -> int | None:
    """The address space this process has mapped (Linux), or None where RLIMIT_AS is not enforced."""
    if sys.platform != "linux":
        return None
    with open("/proc/self/status") as status:
        return next((int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:")), None)
