"""Real Flower processes for the integration tests: free loopback ports, a private FLWR_HOME, and a tracker that
stops every process a test started, by PID, and checks that none is left.

Flower's daemons spawn their own children (``flower-superexec``, then one ``flwr-clientapp`` /
``flwr-serverapp`` / ``flwr-simulation`` per task), some of them detached in a new session, and a child
outlives a parent killed with SIGKILL for a few seconds. ``Processes`` therefore records, while the test
runs, every descendant of what it started (PID and start time, so a reused PID is never signalled), and at
the end also looks for any process whose command line names one of the test's own ports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # flower-superlink, flower-supernode and flwr are installed beside python


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "
    return int(fields[1]), fields[0], int(fields[19])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


class Processes:
    """The processes a test starts (``start``), their descendants (``track``), and ``stop_all``."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.popens: dict[str, subprocess.Popen] = {}
        self.seen: dict[int, int] = {}  # pid -> start time, of every process started or descended from one
        self.ports: list[int] = []  # a process naming 127.0.0.1:<one of these> in its command line is ours

    def port(self) -> int:
        """A free loopback port, not one this test already took, remembered as the test's own."""
        port = free_port()
        while port in self.ports:  # the kernel may hand back a port it gave before, now closed
            port = free_port()
        self.ports.append(port)
        return port

    def start(self, name: str, *args: str, cwd: Path | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(BIN / args[0]), *args[1:]], env=self.env, cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.popens[name] = proc
        self._remember(proc.pid)
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def _remember(self, pid: int) -> None:
        stat = _stat(pid)
        if stat is not None and stat[1] != "Z":
            self.seen.setdefault(pid, stat[2])

    def descendants(self, root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid in _pids():
            stat = _stat(pid)
            if stat is not None:
                children.setdefault(stat[0], []).append(pid)
        out, todo = [], [root]
        while todo:
            for child in children.get(todo.pop(), []):
                out.append(child)
                todo.append(child)
        return out

    def track(self) -> None:
        """Record the current descendants of everything started (call it while waiting)."""
        for proc in self.popens.values():
            for pid in self.descendants(proc.pid):
                self._remember(pid)
        if self.ports:
            ours = re.compile(r"127\.0\.0\.1:(?:%s)(?!\d)" % "|".join(map(str, self.ports)))
            for pid in _pids():
                if pid != os.getpid() and ours.search(_cmdline(pid)):
                    self._remember(pid)

    def alive(self) -> list[int]:
        """The recorded processes still running (same PID and start time, not a zombie)."""
        out = []
        for pid, start in self.seen.items():
            stat = _stat(pid)
            if stat is not None and stat[2] == start and stat[1] != "Z":
                out.append(pid)
        return out

    def kill(self, pid: int, sig: int = signal.SIGKILL) -> None:
        stat = _stat(pid)
        if stat is not None and self.seen.get(pid) == stat[2]:  # never a reused PID
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill_tree(self, name: str) -> list[int]:
        """SIGKILL a started process and every descendant at once (a machine that dies); return the PIDs."""
        root = self.popens[name].pid
        tree = [root, *self.descendants(root)]
        for pid in tree:
            self._remember(pid)
        for pid in tree:
            self.kill(pid)
        self.popens[name].wait(timeout=10)
        return tree

    def stop_all(self) -> list[int]:
        """SIGTERM everything recorded, SIGKILL what is left after 10 s; return what survived even that."""
        self.track()
        for pid in self.alive():
            self.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            self._reap()
            self.track()
            time.sleep(0.2)
        for _ in range(3):
            self.track()
            for pid in self.alive():
                self.kill(pid, signal.SIGKILL)
            time.sleep(0.5)
            self._reap()
        return self.alive()

    def _reap(self) -> None:
        for proc in self.popens.values():
            proc.poll()


@pytest.fixture
def flower_env(tmp_path):
    """The environment of the test's Flower processes: a private FLWR_HOME, no telemetry, no update check,
    no runtime dependency installation (offline; secfl is installed in this interpreter's environment)."""
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "OMP_NUM_THREADS": "1",
           "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2", "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env


@pytest.fixture
def processes(flower_env, tmp_path):
    """A ``Processes`` tracker; every process is stopped by PID at the end and none may be left."""
    if not (BIN / "flower-superlink").exists():
        pytest.skip("Flower's executables are not installed beside this interpreter (pip install 'secfl[flower]')")
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(flower_env, logs)
    try:
        yield procs
    finally:
        left = procs.stop_all()
        assert not left, f"processes left running: {[(pid, _cmdline(pid)) for pid in left]}"
