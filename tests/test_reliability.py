"""Nothing finished is lost: kill -9 and resume, failures in child processes, memory limits.

Real processes throughout: `automl search` as a subprocess killed with SIGKILL, trials trained in
forkserver children killed from outside, real journal storage and MLflow SQLite store.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import mlflow_runs
from optuna.trial import TrialState

AUTOML = str(Path(sys.executable).parent / "automl")

SPACE = {
    "name": "killable",
    "input": "image",
    "architecture": {
        "blocks": {
            "block": "conv",
            "filters": {"type": "int", "low": 4, "high": 8},
            "kernel_size": 3,
            "pooling": "max",
        },
        "pool": {"block": "global_pool", "mode": "avg"},
        "head": {
            "block": "dense",
            "units": {"type": "int", "low": 4, "high": 16},
            "depth": 2,
            "dropout": {"type": "float", "low": 0.0, "high": 0.2},
        },
    },
    "training": {
        "optimizer": "sgd",
        "momentum": 0.9,
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.05, "log": True},
        "batch_size": 64,
    },
}


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "killable.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _load(storage, name):
    from automl.stores import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def _wait_for(condition, proc=None, timeout=240, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _mid_trial(storage, name, min_complete):
    """A trial is training (has reported an epoch) and `min_complete` others are done."""

    def check():
        try:
            trials = _load(storage, name).get_trials(deepcopy=False)
        except KeyError:
            return False
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        return done >= min_complete and any(t.state == TrialState.RUNNING and t.intermediate_values for t in trials)

    return check


def _assert_mlflow_consistent(tracking_uri, study, parents=1):
    _client, runs = mlflow_runs(tracking_uri)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"], "runs left RUNNING"
    roles = [r.data.tags.get("automl.role") for r in runs]
    assert roles.count("search") == parents
    parent = next(r for r in runs if r.data.tags.get("automl.role") == "search")
    children = {r.info.run_id: r for r in runs if r.data.tags.get("automl.role") == "trial"}
    ran = {t.user_attrs["mlflow_run_id"]: t for t in study.trials if "mlflow_run_id" in t.user_attrs}
    assert set(children) == set(ran), "one MLflow child run per trial that ran, no more"
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    return parent, children, ran


def _search_command(space_file, storage, uri, study, trials, epochs, *extra, seed=0) -> list[str]:
    """`automl search` on digits without pruning, quiet (tmp paths hold no spaces)."""
    words = f"search {space_file} --data digits --trials {trials} --epochs {epochs} --study {study} --seed {seed}"
    return [AUTOML, *words.split(), "--pruner", "none", "-q", "--storage", storage, "--tracking-uri", uri, *extra]


def test_sigkill_mid_trial_then_resume_loses_and_repeats_nothing(tmp_path, space_file):
    storage, uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _search_command(space_file, storage, uri, study="kill", trials=4, epochs=40)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(_mid_trial(storage, "kill", 1), first, what="a trial in training")
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {t.number: (t.state, t.value) for t in _load(storage, "kill").trials if t.state != TrialState.RUNNING}

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    study = _load(storage, "kill")
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 4 and TrialState.RUNNING not in states
    dead = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(dead) == 1 and "died" in dead[0].user_attrs["fail_reason"]
    for number, (state, value) in before.items():  # finished trials kept as they were, not re-run
        assert (study.trials[number].state, study.trials[number].value) == (state, value)
    parent, children, _ = _assert_mlflow_consistent(uri, study)
    assert children[dead[0].user_attrs["mlflow_run_id"]].info.status == "KILLED"
    assert parent.info.status == "FINISHED"


def test_retry_dead_enqueues_the_killed_configuration(tmp_path, space_file):
    storage, uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = _search_command(space_file, storage, uri, "retry", 2, 40, "--retry-dead", seed=1)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(_mid_trial(storage, "retry", 0), first, what="a trial in training")
    first.send_signal(signal.SIGKILL)
    first.wait()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = _load(storage, "retry")
    dead = next(t for t in study.trials if t.state == TrialState.FAIL)
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == dead.number)
    assert retry.params == dead.params and retry.state == TrialState.COMPLETE


def _kill_trial_process_when(study_name, storage, number, stop):
    """Simulates the kernel's OOM killer: SIGKILL to the child training trial `number`."""
    from multiprocessing import forkserver

    import psutil

    while not stop.is_set():
        try:
            trial = next((t for t in _load(storage, study_name).trials if t.number == number), None)
        except KeyError:
            trial = None
        if trial is not None and trial.state == TrialState.RUNNING and trial.intermediate_values:
            server = psutil.Process(forkserver._forkserver._forkserver_pid)
            for child in server.children():
                child.send_signal(signal.SIGKILL)
            return
        time.sleep(0.02)


@pytest.mark.filterwarnings("ignore:Fixed parameter")  # the out-of-range values are the point
def test_isolated_trials_survive_exceptions_nan_memory_limit_and_sigkill(tmp_path, digits_small):
    from automl import Search

    storage, uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    ok = {"blocks.filters": 4, "head.units": 8, "head.dropout": 0.0, "learning_rate": 0.02}
    enqueue = [
        ok,
        {**ok, "head.dropout": 1.5},  # Dropout rejects the rate: an exception at build
        {**ok, "learning_rate": 1e38},  # diverges: NaN loss
        {**ok, "head.units": 12000},  # a 12000x12000 layer: over the memory limit
        {**ok, "head.units": 9},
    ]  # killed from outside while training
    search = Search(
        SPACE_OBJ(),
        study_name="iso",
        storage=storage,
        tracking_uri=uri,
        pruner="none",
        seed=0,
        max_trials=3,
        isolate=True,
        memory_limit_mb=900,
        enqueue=enqueue,
        patience=None,
        verbose=False,
    )
    stop = threading.Event()
    killer = threading.Thread(target=_kill_trial_process_when, args=("iso", storage, 4, stop), daemon=True)
    killer.start()
    try:
        result = search.fit(data=digits_small, epochs=25)
    finally:
        stop.set()
    study = result.study
    by_number = {t.number: t for t in study.trials}
    assert [by_number[i].state for i in range(1, 5)] == [TrialState.FAIL] * 4
    reasons = [by_number[i].user_attrs["fail_reason"] for i in range(1, 5)]
    assert "rate" in reasons[0].lower()
    assert "non-finite" in reasons[1]
    assert "memory limit of 900 MB" in reasons[2]
    assert "SIGKILL" in reasons[3]
    assert sum(t.state == TrialState.COMPLETE for t in study.trials) == 3
    _, children, _ = _assert_mlflow_consistent(uri, study)
    killed = [children[by_number[i].user_attrs["mlflow_run_id"]] for i in (3, 4)]
    assert [r.info.status for r in killed] == ["KILLED", "KILLED"]
    assert all("automl.fail_reason" in r.data.tags for r in killed)
    assert result.best_model().predict(digits_small.x_val[:2], verbose=0).shape == (2, 10)


def SPACE_OBJ():
    from automl.space import SearchSpace

    return SearchSpace.from_dict(SPACE, source="killable")


def test_a_worker_on_another_host_killed_mid_trial_is_reaped_by_its_heartbeat(tmp_path, space_file, monkeypatch):
    """The owner-PID check cannot judge a worker on another machine (its record names another host):
    only its stopped Optuna heartbeat can reveal that it died, on an RDB storage."""
    from mlflow.tracking import MlflowClient

    from automl import Search
    from automl.data import load_data
    from automl.stores import StoreError

    storage, uri = f"sqlite:///{tmp_path / 'optuna.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = {"study": "hb", "trials": 3, "epochs": 20}
    cmd = _search_command(space_file, storage, uri, args["study"], args["trials"], args["epochs"])
    first = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "AUTOML_HOST": "another-host"},
    )
    mid_trial = _mid_trial(storage, "hb", 1)

    def second_trial_training():
        try:
            return mid_trial()
        except StoreError:  # the first worker is still creating the database's tables
            return False

    try:
        _wait_for(second_trial_training, first, what="a trial in training")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the whole machine goes: worker and any child it has
        first.wait()
    dead = next(t for t in _load(storage, "hb").trials if t.state == TrialState.RUNNING)
    assert dead.user_attrs["owner"]["host"] == "another-host"

    # the second worker's storage: a 1 s heartbeat, silent for 2 s means dead (defaults: 60 s, 180 s);
    # 4 s after the kill the dead worker's last heartbeat is stale for certain
    monkeypatch.setattr("automl.stores.HEARTBEAT_SECONDS", 1)
    monkeypatch.setattr("automl.stores.GRACE_SECONDS", 2)
    time.sleep(4)
    result = Search(
        str(space_file),
        study_name=args["study"],
        storage=storage,
        tracking_uri=uri,
        seed=0,
        pruner="none",
        max_trials=args["trials"],
        verbose=False,
    ).fit(data=load_data("digits", seed=0), epochs=args["epochs"])

    study = result.study
    reaped = study.trials[dead.number]
    assert reaped.state == TrialState.FAIL and "heartbeat" in reaped.user_attrs["fail_reason"]
    assert "another-host" in reaped.user_attrs["fail_reason"]
    run = MlflowClient(uri).get_run(reaped.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED" and "heartbeat" in run.data.tags["automl.fail_reason"]
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == args["trials"] and states.count(TrialState.FAIL) == 1
    assert TrialState.RUNNING not in states
    _assert_mlflow_consistent(uri, study)


def test_a_trial_failed_after_its_run_finished_ends_its_run_with_the_trials_fate(stores):
    """A Ray actor killed just after its trial finished training: the trial process had ended its
    run FINISHED, the study never heard, and the driver failed the trial. CI saw that FAIL trial's
    MLflow run still FINISHED; it now says KILLED with the reason, as Optuna does. A run its own
    process ended FAILED keeps its own reason."""
    from mlflow import MlflowClient

    from automl import records
    from automl.tracking import Tracker

    tracker = Tracker(stores["tracking_uri"], experiment="ended-twice")
    study = optuna.create_study(direction="minimize")
    tracker.start_search(study, {}, {})
    finished, failed = tracker.start_trial(0, study.study_name, {}), tracker.start_trial(1, study.study_name, {})
    finished.finish("COMPLETE", {"val_loss": 0.5})
    failed.finish("FAIL", {}, {records.TAG_FAIL_REASON: "ValueError: its own"})
    for run in (finished, failed):
        tracker.end_run(run.run_id, "FAIL", "the search driver was stopped (SystemExit)")
    client = MlflowClient(stores["tracking_uri"])
    ended, kept = client.get_run(finished.run_id), client.get_run(failed.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags[records.TAG_STATE] == "FAIL"
    assert ended.data.tags[records.TAG_FAIL_REASON] == "the search driver was stopped (SystemExit)"
    assert kept.info.status == "FAILED" and kept.data.tags[records.TAG_FAIL_REASON] == "ValueError: its own"


# ---------------------------------------------------------------- the default: a recycled worker process


def test_default_search_trains_in_a_worker_that_is_replaced_after_growing(tmp_path, digits_small):
    """By default trials train in one worker process (not the search's), trial after trial; a worker
    that has grown past `recycle_mb` since its first trial is replaced; `isolate=False` trains here."""
    from automl import Search

    stores = {"storage": str(tmp_path / "j"), "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"}
    common = dict(max_trials=3, seed=0, verbose=False, pruner="none", **stores)
    kept = Search(SPACE_OBJ(), study_name="kept", **common).fit(data=digits_small, epochs=2)
    workers = [t.user_attrs["automl.worker"] for t in kept.study.trials]
    assert len(set(workers)) == 1 and not workers[0].endswith(f":{os.getpid()}")
    assert [t.state for t in kept.study.trials] == [TrialState.COMPLETE] * 3

    replaced = Search(SPACE_OBJ(), study_name="replaced", recycle_mb=1e-6, **common).fit(data=digits_small, epochs=2)
    workers = [t.user_attrs["automl.worker"] for t in replaced.study.trials]
    # the first trial of a worker sets its baseline; any growth after the second replaces it
    assert workers[0] == workers[1] != workers[2]

    here = Search(SPACE_OBJ(), study_name="here", isolate=False, **common).fit(data=digits_small, epochs=2)
    from automl.recovery import worker_id

    assert {t.user_attrs["automl.worker"] for t in here.study.trials} == {worker_id()}
    _, runs = mlflow_runs(stores["tracking_uri"])
    assert {r.data.tags.get("automl.worker") for r in runs if r.data.tags.get("automl.role") == "trial"} >= set(workers)


def test_a_killed_default_worker_fails_its_trial_and_the_next_one_gets_a_new_worker(tmp_path, digits_small):
    from automl import Search

    storage, uri = str(tmp_path / "j"), f"sqlite:///{tmp_path / 'm.db'}"
    stop = threading.Event()
    killer = threading.Thread(target=_kill_trial_process_when, args=("w", storage, 1, stop), daemon=True)
    killer.start()
    try:
        result = Search(
            SPACE_OBJ(),
            study_name="w",
            storage=storage,
            tracking_uri=uri,
            max_trials=3,
            seed=0,
            pruner="none",
            patience=None,
            verbose=False,
        ).fit(data=digits_small, epochs=30)
    finally:
        stop.set()
    by_number = {t.number: t for t in result.study.trials}
    assert by_number[1].state == TrialState.FAIL and "SIGKILL" in by_number[1].user_attrs["fail_reason"]
    complete = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # the budget counts finished trials: the killed one is not one of them
    workers = [t.user_attrs["automl.worker"] for t in complete]
    assert workers[0] != workers[1] == workers[2]  # trial 0's worker died with trial 1
    _assert_mlflow_consistent(uri, result.study)


def test_a_default_search_runs_in_a_jupyter_kernel(tmp_path):
    """A notebook cell (no script to import, `__main__` is the kernel) runs a default search whose
    trials train in worker processes."""
    import nbformat
    from nbclient import NotebookClient

    cell = f"""
import os
from automl import Search
from automl.data import load_builtin, make_dataset
x, y, kind = load_builtin("digits")
data = make_dataset(x[:200], y[:200], kind=kind, seed=0)
search = Search("image_cnn", study_name="nb", max_trials=2, seed=0, verbose=False, start=False,
                storage={str(tmp_path / "j")!r}, tracking_uri={"sqlite:///" + str(tmp_path / "m.db")!r})
result = search.fit(data=data, epochs=1)
workers = {{t.user_attrs["automl.worker"] for t in result.study.trials}}
assert len(result.study.trials) == 2 and all(not w.endswith(f":{{os.getpid()}}") for w in workers), workers
print("trained in", len(workers), "worker")
"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "trained in 1 worker" in nb.cells[0].outputs[-1]["text"]
