"""The `automl` command as a user runs it: a real subprocess each time."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

AUTOML = [sys.executable, "-m", "automl.cli"]


def run(args, cwd, timeout=300):
    env = {**os.environ, "AUTOML_HOME": str(Path(cwd) / "mlruns")}
    return subprocess.run([*AUTOML, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_does_not_import_tensorflow(tmp_path):
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom automl.cli import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "assert 'search' in r.output\n"
            "r = CliRunner().invoke(app, ['search', '--help'])\nassert '--tracking-uri' in r.output\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mlflow')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One finished CLI search in a fresh working directory (the embedded default store)."""
    tmp_path = tmp_path_factory.mktemp("cli")
    space = tmp_path / "mlp.yaml"
    space.write_text("name: mlp\narchitecture:\n  hidden: {block: dense, units: [8, 16]}\n"
                     "training:\n  learning_rate: {type: float, low: 0.001, high: 0.03, log: true}\n")
    result = run(["search", str(space), "--data", "wine", "--trials", "2", "--epochs", "2", "--seed", "0",
                  "--study", "cli"], tmp_path)
    return tmp_path, space, result


def test_search_then_trials_on_the_embedded_store(searched):
    tmp_path, space, result = searched
    assert result.returncode == 0, result.stderr
    assert "cli: val_accuracy (maximize)" in result.stdout and "COMPLETE" in result.stdout
    assert "automl ui" in result.stderr and "automl trials --study cli" in result.stderr
    assert (tmp_path / "mlruns" / "optuna.journal").exists() and (tmp_path / "mlruns" / "mlflow.db").exists()
    assert list((tmp_path / "mlruns" / "artifacts").rglob("model.keras"))
    board = run(["trials", "--study", "cli", "--csv", str(tmp_path / "t.csv")], tmp_path)
    assert board.returncode == 0, board.stderr
    assert board.stdout.count("COMPLETE") == 2
    assert (tmp_path / "t.csv").read_text().startswith("trial,state,value")
    # same command again: the study is complete, nothing is added
    again = run(["search", str(space), "--data", "wine", "--trials", "2", "--epochs", "2", "--study", "cli",
                 "--quiet"], tmp_path)
    assert again.returncode == 0 and again.stdout.count("COMPLETE") == 2


@pytest.mark.parametrize("args, message", [
    (["search", "missing.yaml", "--data", "digits"], "missing.yaml: <top>: file not found"),
    (["search", "BAD", "--data", "digits"], "BAD.yaml: architecture.blocks.each.filters.low"),
    (["search", "image_cnn", "--data", "nope.csv"], "nope.csv: not a built-in data set"),
    (["search", "image_cnn", "--data", "digits", "--sampler", "grid-ish"], "unknown sampler 'grid-ish'"),
    (["trials", "--study", "nothing-here"], "no study 'nothing-here'"),
])
def test_bad_input_gets_one_clear_line_and_exit_code_2(tmp_path, args, message):
    (tmp_path / "BAD.yaml").write_text("architecture:\n  blocks:\n    repeat: 2\n    each:\n"
                                       "      block: conv\n      filters: {type: int, low: many, high: 3}\n")
    args = [str(tmp_path / "BAD.yaml") if a == "BAD" else a for a in args]
    result = run(args, tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_spaces_lists_shipped_spaces(tmp_path):
    result = run(["spaces"], tmp_path)
    assert result.returncode == 0 and "image_cnn" in result.stdout and "tabular_mlp" in result.stdout


def _while_serving(args, cwd, probe_url, then, timeout=90):
    """Start `automl ARGS` (a server, in its own process group), poll `probe_url` until it answers
    JSON, return `then(that JSON)` while the server still runs, then stop it."""
    import json
    import signal
    import time
    import urllib.request

    env = {**os.environ, "AUTOML_HOME": str(Path(cwd) / "mlruns")}
    proc = subprocess.Popen([*AUTOML, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(probe_url, timeout=5) as r:
                    first = json.load(r)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.time() < deadline, f"automl {args[0]} did not come up"
                time.sleep(1)
        return then(first)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ui_serves_the_search_on_localhost(searched):
    import json
    import urllib.request

    from conftest import free_port

    tmp_path, _, _ = searched
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"

    def search_runs(found):
        body = json.dumps({"experiment_ids": [found["experiment"]["experiment_id"]]}).encode()
        request = urllib.request.Request(f"{base}/runs/search", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.load(r)["runs"]

    runs = _while_serving(["ui", "--port", str(port)], tmp_path, f"{base}/experiments/get-by-name?experiment_name=cli",
                          search_runs)
    tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
    parents = [t for t in tags if t.get("automl.role") == "search"]
    children = [t for t in tags if t.get("automl.role") == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent_id = [r["info"]["run_id"] for r, t in zip(runs, tags) if t.get("automl.role") == "search"][0]
    assert all(t["mlflow.parentRunId"] == parent_id for t in children)


def test_dashboard_serves_the_study_storage(searched):
    """`automl dashboard` runs optuna-dashboard on the embedded journal; its API lists the study."""
    from conftest import free_port

    tmp_path, _, _ = searched
    missing = run(["dashboard", "--storage", str(tmp_path / "nothing.journal")], tmp_path)
    assert missing.returncode == 2 and "no Optuna journal file here" in missing.stderr
    port = free_port()
    studies = _while_serving(["dashboard", "--port", str(port)], tmp_path, f"http://127.0.0.1:{port}/api/studies",
                             lambda found: found["study_summaries"], timeout=60)
    assert [s["study_name"] for s in studies] == ["cli"]
