"""The CLI's progress displays: bars on a terminal, plain lines otherwise."""

import io
from types import SimpleNamespace

from rich.console import Console

from secfl.cli_progress import audit_line, audit_progress, bench_progress, cell_line


def cell(status="done", skipped=False):
    return SimpleNamespace(id="seed=0", status=status, skipped=skipped, seconds=1.5, final_accuracy=0.9,
                           stopped=None, error="boom")


def test_plain_lines_say_what_finished_and_how_long_is_left(capsys):
    with bench_progress(Console(file=io.StringIO()), False) as (on_cell, on_round):
        assert on_round is None  # no rounds without a terminal: one line per cell
        on_cell(cell(skipped=True), 1, 3)
        on_cell(cell(), 2, 3)
        on_cell(cell("failed"), 3, 3)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/3] seed=0: final accuracy 0.9000, finished before"
    assert lines[1].startswith("[2/3] seed=0: final accuracy 0.9000, done (1.5 s) (about") and "min left" in lines[1]
    assert lines[2] == "[3/3] FAILED seed=0: boom"
    with audit_progress(Console(file=io.StringIO()), False) as (progress, say):
        progress("dp", "canary run", 3, 10)  # silent until the run ends
        progress("dp", "canary run", 10, 10)
        say("done")
    assert capsys.readouterr().out.splitlines() == ["dp: canary run finished (10 rounds)", "done"]


def test_bars_on_a_terminal_track_cells_rounds_and_runs():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with bench_progress(console, True) as (on_cell, on_round):
        on_round("seed=0", {"round": 1, "of": 4, "accuracy": 0.5})
        on_round("seed=0", {"round": 2, "of": 4})
        on_cell(cell(), 1, 1)
    assert "seed=0: final accuracy 0.9000, done" in out.getvalue()
    with audit_progress(console, True) as (progress, say):
        progress("dp", "run", 1, 2)
        say("dp: finished")
    assert "dp: finished" in out.getvalue()


def test_the_audit_line_gives_estimate_bound_claim_and_control():
    result = {"name": "dp", "epsilon_claimed": 3.0, "epsilon_server": 14.0,
              "audit": {"epsilon_lower_bound": 0.4, "flagged": True,
                        "gaussian": {"epsilon": 8.0, "epsilon_low": 6.0, "epsilon_high": 10.0, "flagged": True}},
              "negative_control": {"epsilon_lower_bound": 1.2, "flagged": False}}
    assert audit_line(result) == ("dp: epsilon ~ 8 [6, 10], proven >= 0.4 (claimed 3, 14 against the server)  FLAGGED; "
                                  "negative control NOT caught")
    result["audit"]["gaussian"].update(epsilon=2.0, epsilon_low=1.0, epsilon_high=3.5, flagged=False)
    result["audit"]["fresh_noise"] = {"flagged": True}  # flagged by the fresh-noise test alone
    assert audit_line(result).endswith("(claimed 3, 14 against the server)  FLAGGED (noise shared across rounds); "
                                       "negative control NOT caught")
    assert cell_line(cell("n/a"), 1, 2) == "[1/2] n/a seed=0: boom"
