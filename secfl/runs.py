"""A run directory: resolved config, per-round metrics, summary, environment, and a resume checkpoint.

Layout: ``config.toml`` (resolved scenario), ``metrics.jsonl`` (one JSON object per finished round),
``summary.json``, ``env.json`` (versions, seed, git sha), ``checkpoint.pt`` (model + server
optimizer after the last finished round) and, after a resume that replays rounds whose checkpoint was
lost, ``replayed.jsonl`` (their first metrics lines: released once already, so still accounted). Every file is written atomically or appended and fsynced,
so a killed run loses nothing already written: a metrics line is made durable before its checkpoint,
and on resume lines past the checkpoint are dropped, so no round is lost or duplicated.

Threat model: a run directory may come from someone else (a shared results folder, a download). No
file in it may execute code when secfl opens it: the checkpoint is read with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler that rebuilds only tensors and plain
containers (dict, list, tuple, str, int, float, bool, None) and refuses every other global; JSON and
TOML files are data by construction. A checkpoint that is not such data raises
``ConfigurationError``, never runs anything.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import tomli_w
import torch

from secfl.exceptions import ConfigurationError

PACKAGES = ("secfl", "numpy", "torch", "cryptography", "opacus", "tenseal", "dp-accounting", "pydantic", "flwr")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint holding only tensors and plain data; anything else is refused, never executed.

    Raises:
        ConfigurationError: the file is not a checkpoint of that kind (damaged, or crafted to run code).
    """
    try:
        checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # the restricted unpickler raises UnpicklingError, RuntimeError, EOFError ...
        raise ConfigurationError(
            f"{path} is not a checkpoint secfl wrote (only tensors and plain data are accepted): "
            f"{type(error).__name__}; delete it to restart from round 0, or resume from another copy") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("round"), int):
        raise ConfigurationError(f"{path} is not a checkpoint secfl wrote; delete it to restart from round 0")
    return checkpoint


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The complete JSON lines of ``path`` (none if it is missing; a torn last line is ignored)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def environment(seed: int) -> dict[str, Any]:
    """Versions of Python and the key packages, the platform, the seed and the git sha (if any)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        sha = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
            "seed": seed, "git_sha": sha, "crypto_randomness": "os.urandom (never seeded)",
            "torch_threads": torch.get_num_threads()}


def _rounds(config: dict[str, Any]) -> Any:
    return config.get("run", {}).get("rounds") if isinstance(config.get("run"), dict) else None


def _extends(stored: dict[str, Any], config: dict[str, Any]) -> bool:
    """True if ``config`` is ``stored`` with more ``run.rounds`` and nothing else changed."""
    old, new = _rounds(stored), _rounds(config)
    if not (isinstance(old, int) and isinstance(new, int) and new > old):
        return False
    return {**stored, "run": {**stored["run"], "rounds": new}} == config


class RunDir:
    """The files of one run; ``start`` a new run or ``resume`` one with the same config."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_path = self.path / "config.toml"
        self.metrics_path = self.path / "metrics.jsonl"
        self.summary_path = self.path / "summary.json"
        self.env_path = self.path / "env.json"
        self.checkpoint_path = self.path / "checkpoint.pt"
        self.replayed_path = self.path / "replayed.jsonl"
        self.releases_path = self.path / "releases.jsonl"

    def start(self, config: dict[str, Any], *, seed: int) -> None:
        """Create the directory for a new run.

        Raises:
            ConfigurationError: the directory already holds a run.
        """
        if self.config_path.exists():
            raise ConfigurationError(
                f"{self.path} already holds a run; pass --resume to continue it or --out to write elsewhere"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.config_path, tomli_w.dumps(config).encode())
        atomic_write(self.env_path, json.dumps(environment(seed), indent=2).encode())
        self.metrics_path.touch()

    def resume(self, config: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Reopen a run: return (last finished round, checkpoint or None) and trim unfinished lines.

        Raises:
            ConfigurationError: nothing to resume, or the run was started with another config.
        """
        if not self.config_path.exists():
            raise ConfigurationError(f"{self.path} holds no run to resume; drop --resume to start one")
        stored = tomllib.loads(self.config_path.read_text(encoding="utf-8"))
        if stored != config and _extends(stored, config):  # more rounds, nothing else: extend the run
            atomic_write(self.config_path, tomli_w.dumps(config).encode())
        elif stored != config:
            changed = sorted(k for k in {*stored, *config} if stored.get(k) != config.get(k))
            hint = ("; the noise multiplier was solved for privacy.target_epsilon over run.rounds, so more rounds "
                    "change it: give noise_multiplier explicitly to extend a run" if "stages" in changed
                    and _rounds(stored) != _rounds(config) else "")
            raise ConfigurationError(
                f"{self.path} was started with a different config ({', '.join(changed)} differ); resume with the "
                f"same scenario, seed and --set values (only more run.rounds may be added), or use a new --out{hint}"
            )
        checkpoint = None
        if self.checkpoint_path.exists():
            checkpoint = load_checkpoint(self.checkpoint_path)
        done = checkpoint["round"] if checkpoint else 0
        rows = self.metrics()
        kept = [row for row in rows if row["round"] <= done]
        replayed = [row for row in rows if row["round"] > done]
        if replayed:  # released, but the state after them was lost: they run again, and still count
            with open(self.replayed_path, "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(row) + "\n" for row in replayed))
                handle.flush()
                os.fsync(handle.fileno())
        atomic_write(self.metrics_path, "".join(json.dumps(row) + "\n" for row in kept).encode())
        return done, checkpoint

    def replayed(self) -> list[dict[str, Any]]:
        """Rounds that finished and were released but are run again after a resume (their checkpoint was
        lost): their metrics lines, kept in ``replayed.jsonl``. Each release still costs privacy."""
        return _read_lines(self.replayed_path)

    def append_release(self, record: dict[str, Any]) -> None:
        """Record a one-time release (e.g. AutoFLIP's exploration) durably, before anything depends on it."""
        with open(self.releases_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def releases(self) -> list[dict[str, Any]]:
        """Every one-time release made so far, re-runs after a resume included (each costs privacy)."""
        return _read_lines(self.releases_path)

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics line (a torn last line from a kill is ignored)."""
        return _read_lines(self.metrics_path)

    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one round's metrics and make it durable."""
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically replace the checkpoint (after the round's metrics line is durable)."""
        tmp = self.path / ".checkpoint.tmp"
        torch.save(state, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.checkpoint_path)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.summary_path, json.dumps(summary, indent=2).encode())
