import json

from typer.testing import CliRunner

from secfl.cli import app

runner = CliRunner()
SMALL = """
name = "tiny"
[run]
rounds = 2
clients_per_round = 3
[data]
dataset = "digits"
num_clients = 4
[model]
options = { hidden = 16 }
"""


def write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


def test_list_names_every_component():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    for word in ("mnist", "dirichlet", "cnn", "l2clip", "quantize", "plaintext", "buckets", "median"):
        assert word in result.output


def test_run_writes_a_run_directory_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", write(tmp_path, SMALL), "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "final accuracy" in result.output
    assert json.loads((out / "env.json").read_text())["seed"] == 5
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    again = runner.invoke(app, ["run", write(tmp_path, SMALL), "--out", str(out), "--seed", "5"])
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = runner.invoke(app, ["run", write(tmp_path, SMALL), "--out", str(out), "--seed", "5", "--resume"])
    assert resumed.exit_code == 0 and len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_misspelled_key_exits_2_naming_it(tmp_path):
    result = runner.invoke(app, ["run", write(tmp_path, SMALL + "[client]\nlrr = 0.1\n")])
    assert result.exit_code == 2
    assert "unknown key 'client.lrr'" in result.output and "Traceback" not in result.output


def test_too_few_groups_exits_2_with_the_fix(tmp_path):
    text = 'aggregator = { kind = "median", num_byzantine = 2 }\ngrouping = { kind = "one_group" }\n' + SMALL
    result = runner.invoke(app, ["run", write(tmp_path, text), "--set", "run.clients_per_round=4"])
    assert result.exit_code == 2
    assert "needs >= 5 inputs" in result.output and "sample at least 5" in result.output


def test_bad_override_and_resume_without_run_exit_2(tmp_path):
    assert runner.invoke(app, ["run", write(tmp_path, SMALL), "--set", "nonsense"]).exit_code == 2
    result = runner.invoke(app, ["run", write(tmp_path, SMALL), "--out", str(tmp_path / "x"), "--resume"])
    assert result.exit_code == 2 and "no run to resume" in result.output
    assert runner.invoke(app, ["demo", "--resume"]).exit_code == 2


SECURE = """
stages = [{ kind = "l2clip", norm = 5.0 }, { kind = "quantize", scale = 4096.0 }]
protocol = { kind = "secagg+" }
grouping = { kind = "buckets", size = 3 }
""" + SMALL.replace("clients_per_round = 3", "clients_per_round = 6").replace("num_clients = 4", "num_clients = 6")


def test_secagg_plus_scenario_runs_and_counts_its_bytes(tmp_path):
    out = tmp_path / "secure"
    result = runner.invoke(app, ["run", write(tmp_path, SECURE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(row["groups"] == 2 and row["bytes_up"] > 0 and row["bytes_down"] > 0 for row in rows)


def test_secure_protocol_without_quantize_exits_2_with_the_fix(tmp_path):
    text = SECURE.replace(', { kind = "quantize", scale = 4096.0 }', "")
    result = runner.invoke(app, ["run", write(tmp_path, text)])
    assert result.exit_code == 2 and "end the stages with Quantize" in result.output
    text = SECURE.replace("size = 3", "size = 2")
    result = runner.invoke(app, ["run", write(tmp_path, text)])
    assert result.exit_code == 2 and "groups of >= 3" in result.output


def test_audit_protocol_refuses_every_attempt_and_writes_the_report(tmp_path):
    """No attack class is open since the inconsistent dealer is convicted (see SPEC.md): exit 0."""
    result = CliRunner().invoke(app, ["audit", "protocol", "--protocol", "secagg", "--out", str(tmp_path / "a.md")])
    assert result.exit_code == 0, result.output
    assert "in-scope attempts refused" in result.output and "NOT refused" not in result.output
    assert (tmp_path / "a.md").read_text().startswith("| attempt | protocol |")
    bad = CliRunner().invoke(app, ["audit", "protocol", "--protocol", "paillier"])
    assert bad.exit_code == 2 and "unknown protocol" in bad.output
