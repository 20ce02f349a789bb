"""Every `automl` flag has an effect a user can see: each test runs the real command and reads the
Optuna study, the MLflow store or the exported files back. One small CSV and a two-parameter space
keep each search to a few seconds; flags whose effects cannot mix share a search."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from test_cli import AUTOML, run

START = {"hidden.units": 128, "learning_rate": 0.0123}  # the space's `start` configuration
BIG, SMALL, MID = ({"hidden.units": u, "learning_rate": 0.02} for u in (128, 2, 16))
SPACE = """name: flags
architecture:
  hidden: {block: dense, units: [2, 16, 128]}
training:
  learning_rate: {type: float, low: 0.0001, high: 0.03, log: true}
start:
  - {hidden.units: 128, learning_rate: 0.0123}
"""
CSV = "--data table.csv --target label --validation-split 0.3"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with the space, the enqueued configurations and 300 digits as a CSV whose target
    `label` is the FIRST column and whose last column is a float (a regression target if taken)."""
    import numpy as np
    import pandas as pd
    import yaml
    from sklearn.datasets import load_digits

    cwd = tmp_path_factory.mktemp("flags")
    digits = load_digits()
    table = pd.DataFrame(digits.data[:300], columns=[f"p{i}" for i in range(64)])
    table.insert(0, "label", digits.target[:300])
    table["score"] = np.random.default_rng(0).normal(size=300).round(3)
    table.to_csv(cwd / "table.csv", index=False)
    (cwd / "space.yaml").write_text(SPACE)
    (cwd / "enqueue.yaml").write_text(yaml.safe_dump([BIG, SMALL, MID]))
    return cwd


def study(cwd, name):
    from automl import load_result

    return load_result(name, str(cwd / "mlruns" / "optuna.journal")).study


def search(cwd, args: str):
    result = run(f"search space.yaml {CSV} --seed 0 {args}".split(), cwd)
    assert result.returncode == 0, result.stderr
    return result


def mlflow_client(cwd):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")


# ---------------------------------------------------------------- one search, five flags


@pytest.fixture(scope="module")
def searched(work):
    """Study `a`: a big accurate configuration that breaks the weight constraint, then a tiny and a
    middle one (enqueued), under an epoch budget that cuts the fourth trial short and skips the fifth."""
    return search(
        work,
        "--study a --trials 5 --epochs 2 --pruner none --enqueue enqueue.yaml "
        "--constraint param_count<=5000 --max-epochs-total 7",
    )


def test_target_and_validation_split_pick_the_column_and_the_held_out_share(work, searched):
    params = mlflow_client(work).get_run(study(work, "a").user_attrs["mlflow_parent_run_id"]).data.params
    # `label` (column 0) is the target: 10 classes, the float last column stays a feature
    assert (params["task"], params["num_classes"], params["input_shape"]) == ("classification", "10", "(65,)")
    assert (params["train_samples"], params["val_samples"]) == ("210", "90")  # 0.3 of 300, not the default 0.2


def test_constraint_records_infeasible_trials_that_never_win(work, searched):
    from automl import load_result

    result = load_result("a", str(work / "mlruns" / "optuna.journal"))
    trials = result.study.trials
    assert [t.params["hidden.units"] for t in trials[:3]] == [128, 2, 16]
    assert trials[0].user_attrs["constraints"][0] > 0 and trials[1].user_attrs["constraints"][0] <= 0
    assert trials[0].value == max(t.value for t in trials)  # the most accurate trial ...
    assert result.best_trial.number != 0 and result.best_trial.params["hidden.units"] != 128  # ... never wins
    board = run(["trials", "--study", "a"], work)
    assert f"best configuration (trial {result.best_trial.number})" in board.stdout
    assert "feasible" in board.stdout


def test_max_epochs_total_bounds_the_epochs_of_all_trials(work, searched):
    trials = study(work, "a").trials
    assert sum(t.user_attrs["epochs_run"] for t in trials) <= 7
    assert len(trials) == 4 and trials[-1].user_attrs["epochs_run"] == 1  # the last one got what was left
    assert "max_epochs_total is 7" in searched.stderr


def test_trials_top_prints_exactly_n_rows(work, searched):
    def rows(out):
        return re.findall(r"^│\s+(\d+) │", out, flags=re.M)

    everything = rows(run(["trials", "--study", "a", "--top", "0"], work).stdout)
    assert len(everything) == 4
    assert rows(run(["trials", "--study", "a", "--top", "2"], work).stdout) == everything[:2]


def test_warm_start_top_k_and_continue_from_seed_a_new_study(work, searched):
    from automl import load_result

    search(work, "--study b --warm-start a --top-k 2 --continue-from a --trials 2 --epochs 1 --quiet")
    a, b = load_result("a", str(work / "mlruns" / "optuna.journal")), study(work, "b")
    own = [t for t in b.trials if "copied_from" not in t.user_attrs]
    copied = [t for t in b.trials if "copied_from" in t.user_attrs]
    top2 = a.leaderboard(2).trial.tolist()
    assert [t.user_attrs.get("warm_start_from") for t in own] == [f"a#{n}" for n in top2]  # exactly k, best first
    assert [t.params for t in own] == [a.study.trials[n].params for n in top2]
    # every finished trial of `a` is copied in with its value, and none counts towards --trials
    assert sorted((t.params["hidden.units"], t.value) for t in copied) == sorted(
        (t.params["hidden.units"], t.value) for t in a.study.trials
    )
    assert len(own) == 2


# ---------------------------------------------------------------- exports of study `a`


def export(cwd, args: str):
    result = run(f"export --study a {CSV} --formats float32 --latency-runs 5 {args}".split(), cwd)
    assert result.returncode == 0, result.stderr
    return result


def registered_versions(cwd):
    return mlflow_client(cwd).search_model_versions("name='a'")


@pytest.fixture(scope="module")
def pareto_export(work, searched):
    result = export(work, "--out pareto --pareto --no-register")
    return result, registered_versions(work)


def test_pareto_exports_each_feasible_front_member_without_registering(work, pareto_export):
    result, versions = pareto_export
    done = [t for t in study(work, "a").trials if t.user_attrs["constraints"][0] <= 0]
    front = {
        t.number
        for t in done
        if not any(
            o.value >= t.value
            and o.user_attrs["param_count"] <= t.user_attrs["param_count"]
            and (o.value, -o.user_attrs["param_count"]) != (t.value, -t.user_attrs["param_count"])
            for o in done
        )
    }
    assert 0 not in front and len(front) >= 2  # the infeasible big trial is left out; tiny and middle stay
    folders = {int(p.name.removeprefix("trial-")) for p in (work / "pareto").glob("trial-*")}
    assert folders == front
    for n in front:
        report = json.loads((work / "pareto" / f"trial-{n:03d}" / "export_report.json").read_text())
        assert report["meta"]["trial"] == n and report["variants"]["float32"]["status"] == "ok"
        assert report["meta"]["param_count"] == study(work, "a").trials[n].user_attrs["param_count"]
    assert versions == [] and "registered as" not in result.stderr


def test_select_int8_exports_the_chosen_trial_with_a_distilled_student_and_registers_it(work, pareto_export):
    from automl import load_result

    result = export(work, "--out chosen --select-int8 2 --distill --distill-epochs 2")
    report = json.loads((work / "chosen" / "export_report.json").read_text())
    selection = report["extra"]["selection"]
    top2 = load_result("a", str(work / "mlruns" / "optuna.journal")).leaderboard(2).trial.tolist()
    assert [c["trial"] for c in selection["candidates"]] == top2
    assert selection["chosen"] == max(selection["candidates"], key=lambda c: c["int8"])["trial"]
    assert report["meta"]["trial"] == selection["chosen"]  # the winner is what was exported
    assert "Quantization-aware selection" in (work / "chosen" / "REPORT.md").read_text()
    student = json.loads((work / "chosen" / "student" / "export_report.json").read_text())
    assert student["meta"]["param_count"] < report["meta"]["param_count"]
    assert student["variants"]["float32"]["status"] == "ok"
    versions = registered_versions(work)  # none after --no-register, one now
    assert len(versions) == 1 and versions[0].tags["automl.trial"] == str(selection["chosen"])
    assert "registered as a version 1" in result.stderr


# ---------------------------------------------------------------- trials in child processes


def test_memory_limit_kills_the_trial_process_timeout_stops_and_direction_is_kept(work):
    """--memory-limit 1: every trial process is killed. --timeout 1 stops the search after the first
    (without it, 10 failures in a row would). --direction minimize is the study's direction."""
    from optuna.study import StudyDirection

    args = f"search space.yaml {CSV} --study d --trials 1 --epochs 1 --memory-limit 1 --timeout 1 --direction minimize"
    result = run(args.split(), work)
    d = study(work, "d")
    assert len(d.trials) == 1 and d.trials[0].state.name == "FAIL"
    assert "exceeded the memory limit of 1 MB" in d.trials[0].user_attrs["fail_reason"]
    assert "timeout of 1 s is reached" in result.stderr
    assert d.directions == [StudyDirection.MINIMIZE] and "d: val_accuracy (minimize)" in result.stdout
    assert d.trials[0].params == START  # without --no-start, the space's start configuration goes first


def _trial_process(proc, timeout=120):
    """The first process the CLI's forkserver forks: the one that trains a trial."""
    import psutil

    cli, deadline = psutil.Process(proc.pid), time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for p in cli.children(recursive=True):
            try:
                parent = p.parent()
                server = parent is not None and parent.pid != cli.pid and "forkserver" in " ".join(parent.cmdline())
                if server and p.cmdline() == parent.cmdline():  # forked, not a program it ran
                    return p
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.02)
    pytest.fail(f"no trial process appeared; exit code {proc.poll()}")


def _wait_for_training(cwd, name, child, timeout=120):
    """Until trial 0 has its MLflow run (made in the child once it runs the trial): a kill before
    that lands while the child is still being started, which is another story."""
    deadline, state = time.time() + timeout, "absent"
    while time.time() < deadline and child.is_running():
        try:
            trial = study(cwd, name).trials[0]
            state = trial.state.name
            if "mlflow_run_id" in trial.user_attrs:
                return
        except (KeyError, IndexError):  # the study or its first trial is not there yet
            pass
        time.sleep(0.05)
    pytest.fail(f"trial 0 did not start training (last seen {state}; trial process alive: {child.is_running()})")


def test_isolate_trains_in_a_child_that_can_die_alone_device_cpu_hides_gpus_and_no_start(work):
    """--isolate: killing the trial's process fails that trial only; --device cpu: the process that
    trains sees CUDA_VISIBLE_DEVICES empty although the search was started with GPU 0 visible;
    --no-start: the space's start configuration is not tried."""
    env = {**os.environ, "AUTOML_HOME": str(work / "mlruns"), "CUDA_VISIBLE_DEVICES": "0"}
    # enough epochs that the kill lands mid-training even when a loaded machine polls the study slowly
    flags = "--trials 1 --epochs 60 --seed 0 --isolate --device cpu --no-start --quiet"
    args = f"search space.yaml {CSV} --study e {flags}"
    proc = subprocess.Popen(
        [*AUTOML, *args.split()], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        child = _trial_process(proc)
        child_env = child.environ()
        _wait_for_training(work, "e", child)
        child.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert child_env.get("CUDA_VISIBLE_DEVICES") == ""
    e = study(work, "e")
    assert [t.state.name for t in e.trials] == ["FAIL", "COMPLETE"]
    assert "killed by SIGKILL" in e.trials[0].user_attrs["fail_reason"]
    killed_run = mlflow_client(work).get_run(e.trials[0].user_attrs["mlflow_run_id"])
    assert killed_run.info.status == "KILLED"  # ended by the search, not left RUNNING
    assert START not in [t.params for t in e.trials]
