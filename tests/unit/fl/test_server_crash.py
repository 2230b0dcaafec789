"""A secure-noise run that crashes in the middle of a round resumes and finishes with no round lost."""

import json

import pytest

from secfl import scenario
from secfl import engine as server
from secfl.hazmat import csprng
from secfl.privacy import Accountant
from secfl.runs import RunDir

DP = {
    "name": "dp-crash",
    "stages": [{"kind": "l2clip", "norm": 1.0}, {"kind": "gaussian_noise", "noise_multiplier": 1.0},
               {"kind": "quantize", "scale": 1024.0}],
    "protocol": {"kind": "secagg+"},
    "grouping": {"kind": "one_group"},
    "run": {"rounds": 5, "seed": 1, "clients_per_round": 4, "sampling": "fixed"},
    "data": {"dataset": "digits", "num_clients": 8},
    "model": {"kind": "logreg"},
    "client": {"epochs": 1, "batch_size": 32, "lr": 0.1},
}
OVERFLOW = "Exceeded the maximum number of bytes that can be encrypted with ChaCha20 for this nonce"


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture
def spec():
    return scenario.validate(DP)


def test_crash_inside_the_noise_of_round_3_then_resume(tmp_path, monkeypatch, spec):
    real, calls, crash_at = csprng.random_bytes, [0], [None]

    def flaky(nbytes):  # the bug as it was seen: the CSPRNG raises in the middle of a round
        calls[0] += 1
        if calls[0] == crash_at[0]:
            raise ValueError(OVERFLOW)
        return real(nbytes)

    def arm(row):  # crash at the second noise draw of round 3 (after one client has already drawn)
        if row["round"] == 2:
            crash_at[0] = calls[0] + 2

    monkeypatch.setattr(csprng, "random_bytes", flaky)
    run_dir = RunDir(tmp_path / "run")
    with pytest.raises(ValueError, match="ChaCha20"):
        server.run(spec, run_dir, on_round=arm)
    before = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert [r["round"] for r in run_dir.metrics()] == [1, 2] and not run_dir.summary_path.exists()

    monkeypatch.setattr(csprng, "random_bytes", real)  # the real code resumes
    summary = server.run(spec, run_dir, resume=True)
    rows = run_dir.metrics()
    assert [r["round"] for r in rows] == [1, 2, 3, 4, 5] and summary["rounds"] == 5
    assert (tmp_path / "run" / "metrics.jsonl").read_text().startswith(before)  # finished rounds kept as written
    expected = [Accountant("rdp", "without_replacement").epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=r,
                                                                 delta=1e-5) for r in range(1, 6)]
    assert [r["epsilon"] for r in rows] == pytest.approx(expected)  # the ledger counts each round once
    assert json.loads(run_dir.summary_path.read_text())["epsilon"] == pytest.approx(expected[-1])


def test_crash_between_the_metrics_line_and_the_checkpoint_replays_that_round_and_counts_both_releases(
        tmp_path, monkeypatch, spec):
    run_dir = RunDir(tmp_path / "run")
    save = run_dir.save_checkpoint

    def die_at_round_3(state):
        if state["round"] == 3:
            raise OSError("killed")
        save(state)

    monkeypatch.setattr(run_dir, "save_checkpoint", die_at_round_3)
    with pytest.raises(OSError):
        server.run(spec, run_dir)
    assert [r["round"] for r in run_dir.metrics()] == [1, 2, 3]  # line 3 durable, checkpoint still at 2

    monkeypatch.setattr(run_dir, "save_checkpoint", save)
    server.run(spec, run_dir, resume=True)
    assert [r["round"] for r in run_dir.metrics()] == [1, 2, 3, 4, 5]
    assert [r["round"] for r in run_dir.replayed()] == [3]  # its first release is kept on record
    expected = Accountant("rdp", "without_replacement").epsilon(noise_multiplier=1.0, sample_rate=0.5, rounds=6,
                                                                delta=1e-5)
    assert run_dir.metrics()[-1]["epsilon"] == pytest.approx(expected)  # 5 rounds + the lost release of round 3
