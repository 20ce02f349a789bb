"""Scale-out on Ray (automl.cluster), with real parts: a local Ray cluster of a head and one extra
node on this machine (`ray.cluster_utils.Cluster`), a study on a real PostgreSQL and one real
`mlflow server`. The driver is a separate process, as a user's would be.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import mlflow_runs, require
from optuna.trial import TrialState
from test_reliability import SPACE, _assert_mlflow_consistent, _wait_for
from test_scale_out import PG, postgres_stores  # noqa: F401 - a fixture

AUTOML = str(Path(sys.executable).parent / "automl")
QUIET = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "RAY_USAGE_STATS_ENABLED": "0"}

DRIVER = """
import os, sys
import numpy as np
from automl import Search
from automl.data import load_data

# the data lives only here: read, then deleted before any worker starts (Ray's object store carries it)
data = load_data("digits.npz", seed=0)
os.remove("digits.npz")
Search(sys.argv[1], study_name="ray", storage=sys.argv[2], tracking_uri=sys.argv[3], seed=0, pruner="none",
       max_trials=int(sys.argv[4]), verbose=True, ray=sys.argv[5], workers=2,
       resources_per_trial={"CPU": 1}).fit(data=data, epochs=int(sys.argv[6]))
"""


def _digits_npz(folder: Path):
    import numpy as np
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    np.savez(folder / "digits.npz", x=(x.reshape(-1, 8, 8, 1) / 16).astype("float32"), y=y)


def _study(url):
    from automl.stores import open_storage

    return optuna.load_study(study_name="ray", storage=open_storage(url))


def _node_of(trial) -> str | None:
    return (trial.user_attrs.get("owner") or {}).get("ray_node")


@pytest.fixture
def two_node_cluster():
    """A Ray head (2 CPUs) and one extra node (1 CPU), real processes on this machine."""
    require(PG, "AUTOML_TEST_POSTGRES not set: run .ci/postgres.sh (CI does)")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    extra = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster, extra
    cluster.shutdown()


def test_a_search_on_two_ray_nodes_survives_losing_one(tmp_path, two_node_cluster, postgres_stores):  # noqa: F811
    from automl.errors import StoreError

    cluster, extra = two_node_cluster
    optuna_url, tracking_uri = postgres_stores
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    driver_dir = tmp_path / "driver"
    driver_dir.mkdir()
    _digits_npz(driver_dir)
    (driver_dir / "driver.py").write_text(textwrap.dedent(DRIVER))
    total = 6
    args = [str(space), optuna_url, tracking_uri, str(total), cluster.address, "30"]
    driver = subprocess.Popen(
        [sys.executable, "driver.py", *args], cwd=driver_dir, env=QUIET, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    extra_id = extra.node_id

    from automl.stores import open_storage

    opened = []  # one storage (one connection pool) for every poll: PostgreSQL has few connections

    def extra_node_trains_its_second_trial():
        try:
            opened[:] = opened or [open_storage(optuna_url)]
            trials = optuna.load_study(study_name="ray", storage=opened[0]).get_trials(deepcopy=False)
        except (KeyError, StoreError):  # no study yet, or the driver is still creating the tables
            return False
        on_extra = [t for t in trials if _node_of(t) == extra_id]
        return any(t.state == TrialState.COMPLETE for t in on_extra) and any(
            t.state == TrialState.RUNNING and t.intermediate_values for t in on_extra
        )

    try:
        _wait_for(extra_node_trains_its_second_trial, driver, timeout=300, what="a second trial on the extra node")
        assert not (driver_dir / "digits.npz").exists()
        cluster.remove_node(extra, allow_graceful=False)  # the machine is gone, mid-trial
        out, err = driver.communicate(timeout=420)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]

    study = _study(optuna_url)
    trials = study.trials
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == total, [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    lost = [t for t in failed if _node_of(t) == extra_id]
    assert len(lost) == 1, [(t.number, t.user_attrs.get("fail_reason")) for t in failed]
    reason = lost[0].user_attrs["fail_reason"]
    assert "died" in reason or "heartbeat" in reason, reason
    assert all(t.user_attrs["fail_reason"].startswith("surplus") for t in failed if t not in lost)
    # trials from both nodes, told apart by automl.worker (node + actor), on the trial and its MLflow run
    workers = {t.user_attrs["automl.worker"] for t in finished}
    assert any(extra_id[:8] in w for w in workers) and any(extra_id[:8] not in w for w in workers), workers
    # the lost worker was restarted by Ray (on the head: the only node left) and its call ran to the end
    assert "Ray workers: 2 finished; 1 restarted by Ray" in err + out, (err + out)[-3000:]
    # one parent run, one child run per trial that ran, the lost one KILLED with the reason; nothing RUNNING
    _parent, children, _ran = _assert_mlflow_consistent(tracking_uri, study)
    killed = children[lost[0].user_attrs["mlflow_run_id"]]
    assert killed.info.status == "KILLED", killed.info.status
    assert killed.data.tags["automl.fail_reason"] == reason and extra_id[:8] in killed.data.tags["automl.worker"]
    assert {r.data.tags["automl.worker"] for r in children.values()} >= workers
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))  # no duplicate trials


def test_sigterm_on_the_driver_stops_every_worker_and_fails_their_trials(tmp_path):
    require(Path(AUTOML).exists(), "automl entry point missing")
    import psutil

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    storage, uri = str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'mlflow.db'}"
    cmd = [AUTOML, "search", str(space), "--data", "digits", "--trials", "20", "--epochs", "200", "--study", "ray"]
    cmd += ["--pruner", "none", "--storage", storage, "--tracking-uri", uri, "--ray", "local", "--workers", "2"]
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=QUIET, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def two_trials_training():
        if not Path(storage).exists():
            return False
        try:
            trials = _study(storage).get_trials(deepcopy=False)
        except KeyError:
            return False
        return sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials) == 2

    try:
        _wait_for(two_trials_training, driver, timeout=300, what="two trials training")
        owners = [t.user_attrs["owner"] for t in _study(storage).trials if t.state == TrialState.RUNNING]
        driver.send_signal(signal.SIGTERM)
        driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode != 0
    study = _study(storage)
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    stopped = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and all("driver was stopped" in t.user_attrs["fail_reason"] for t in stopped)
    _client, runs = mlflow_runs(uri)
    status = {r.info.run_id: r.info.status for r in runs}
    tags = {r.info.run_id: r.data.tags.get("automl.fail_reason") for r in runs}
    mine = [(status[t.user_attrs["mlflow_run_id"]], tags[t.user_attrs["mlflow_run_id"]]) for t in stopped]
    assert all(s == "KILLED" for s, _ in mine), mine
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # no worker left training: the trial processes are gone
    deadline = time.time() + 30
    while any(psutil.pid_exists(o["pid"]) for o in owners) and time.time() < deadline:
        time.sleep(0.5)
    assert not any(psutil.pid_exists(o["pid"]) for o in owners)


@pytest.mark.parametrize(
    "ray_flag, why",
    [("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1"), ("not-an-address", "not an address")],
)
def test_an_unreachable_ray_address_is_one_error_line_before_anything_is_written(tmp_path, ray_flag, why):
    storage = tmp_path / "optuna.journal"
    cmd = [AUTOML, "search", "tabular_mlp", "--data", "wine", "--storage", str(storage), "--ray", ray_flag]
    cmd += ["--workers", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    started = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=QUIET, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and why in lines[0], proc.stderr[-2000:]
    assert time.time() - started < 60
    assert not storage.exists() and not (tmp_path / "mlflow.db").exists()


def test_a_local_ray_instance_that_cannot_place_a_worker_is_one_error_line_not_a_wait(tmp_path):
    storage = tmp_path / "optuna.journal"
    cmd = [AUTOML, "search", "tabular_mlp", "--data", "wine", "--storage", str(storage), "--ray", "local"]
    cmd += ["--workers", "2", "--gpus-per-trial", "1", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=QUIET, timeout=120)  # before: waited forever
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--gpus-per-trial 1: the local Ray instance has 0 GPU(s)" in lines[0], proc.stderr
    assert not storage.exists() and not (tmp_path / "mlflow.db").exists()


def test_without_ray_installed_ray_flags_are_one_error_line(tmp_path):
    # a `ray` package that cannot be imported, ahead of the real one on the path: as if it were not installed
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {**QUIET, "PYTHONPATH": str(tmp_path / "site")}
    cmd = [AUTOML, "search", "tabular_mlp", "--data", "wine", "--storage", str(tmp_path / "o.journal"), "--ray"]
    cmd += ["local", "--workers", "2", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pip install 'automl[ray]'" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "o.journal").exists()
    # and --workers without --ray says how to get several workers
    proc = subprocess.run([AUTOML, "search", "tabular_mlp", "--data", "wine", "--workers", "2"], capture_output=True,
                          text=True, env=QUIET, timeout=60, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 2 and "needs --ray" in proc.stderr
    assert json.dumps(proc.stderr).count("error:") == 1
