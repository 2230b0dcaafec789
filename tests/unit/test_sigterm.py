"""``kill`` (SIGTERM) stops ``secfl bench --jobs 2`` as Ctrl-C does: the friendly message, exit 130, no worker left
running and no leaked-semaphore warning; the finished rounds are on disk for ``--resume``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SUITE = """
name = "term"
[scenario]
run = { rounds = 5000, seed = 0 }  # never finishes within the test: a worker left running would hang it
data = { dataset = "digits", num_clients = 4 }
model = { options = { hidden = 8 } }
[grid]
"run.seed" = [0, 1]
"""


def _children(pid: int) -> list[int]:
    """The bench's worker processes (not multiprocessing's resource tracker, which exits on its own)."""
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == pid
            and b"resource_tracker" not in _cmdline(p)]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_sigterm_stops_a_parallel_bench_cleanly(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CI": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "secfl", "bench", "suite.toml", "--jobs", "2", "--out", "out"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = [tmp_path / "out" / "cells" / f"run.seed={s}" / "metrics.jsonl" for s in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(m.exists() and m.read_text().strip() for m in metrics) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert len(workers) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: finished cells and rounds are saved; continue with --resume" in err
    assert "leaked" not in err and "Traceback" not in err
    time.sleep(1)
    assert [w for w in workers if _cmdline(Path(f"/proc/{w}"))] == []  # no worker left
    assert all(m.read_text().strip() for m in metrics)
