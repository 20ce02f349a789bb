"""Shared fixtures: tiny real data, a tiny space, and private Optuna/MLflow stores per test."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require(condition, reason: str):
    """Skip a test whose service (PostgreSQL, chromium, PyTorch) is missing here; under CI (CI=true) fail
    it instead, so a broken setup cannot leave the suite green by skipping."""
    __tracebackhide__ = True  # reports point at the test, not here
    if not condition:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(reason)


@pytest.fixture(scope="session")
def digits_small():
    """300 of scikit-learn's bundled 8x8 digits: real images, trains in a second."""
    from automl.data import load_builtin, make_dataset

    x, y, kind = load_builtin("digits")
    return make_dataset(x[:300], y[:300], kind=kind, name="digits300", seed=0)


@pytest.fixture
def stores(tmp_path):
    """A fresh journal storage and SQLite MLflow store for one test."""
    return {"storage": str(tmp_path / "optuna.journal"), "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}


@pytest.fixture
def tiny_space():
    from automl.space import Categorical, Float, Int, SearchSpace

    return SearchSpace(
        name="tiny",
        architecture={
            "blocks": {
                "repeat": Int(low=1, high=2),
                "each": {
                    "block": "conv",
                    "filters": Int(low=4, high=8),
                    "kernel_size": 3,
                    "pooling": Categorical(choices=["max", "avg"]),
                },
            },
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "max"])},
        },
        training={
            "optimizer": Categorical(choices=["adam", "sgd"]),
            "momentum": Float(low=0.8, high=0.95, when={"optimizer": "sgd"}),
            "learning_rate": Float(low=3e-3, high=3e-2, log=True),
            "batch_size": 64,
        },
    )


def mlflow_runs(tracking_uri):
    """All runs of all experiments, as MLflow serves them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(exps, max_results=1000)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------- reporting: one finished search, served


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mlflow_server(backend_store_uri: str, log_path, *args: str, timeout: float = 120):
    """A real `mlflow server` on 127.0.0.1 (its own process group); returns (process, base URL) once
    /health answers. Stop it with `stop_process_group(process)`."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - the server writes to it for as long as it runs
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
        # no GenAI job runner (online scoring, trace archival): it adds seconds to start and stop
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return proc, uri
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                stop_process_group(proc)
                pytest.fail(f"mlflow server did not start: {Path(log_path).read_text()[-2000:]}")
            time.sleep(0.5)


def stop_process_group(proc, timeout: float = 30):
    import signal
    import subprocess

    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@pytest.fixture(scope="session")
def finished_search(tmp_path_factory, digits_small):
    """One tiny finished search (4 trials of up to 3 epochs, median pruning) on its own journal and
    SQLite MLflow store, shared by the reporting tests: the result and the store locations."""
    from types import SimpleNamespace

    from automl import Search
    from automl.space import Categorical, Float, Int, SearchSpace

    root = tmp_path_factory.mktemp("finished")
    storage, tracking_uri = str(root / "optuna.journal"), f"sqlite:///{root / 'mlflow.db'}"
    space = SearchSpace(
        name="reportable",
        architecture={
            "blocks": {
                "repeat": Int(low=1, high=2),
                "each": {"block": "conv", "filters": Int(low=4, high=8), "kernel_size": 3},
            },
            "pool": {"block": "global_pool", "mode": Categorical(choices=["avg", "max"])},
        },
        training={
            "optimizer": Categorical(choices=["adam", "sgd"]),
            "momentum": Float(low=0.8, high=0.95, when={"optimizer": "sgd"}),
            "learning_rate": Float(low=3e-3, high=3e-2, log=True),
            "batch_size": 64,
        },
    )
    result = Search(
        space, study_name="reportable", max_trials=4, seed=0, verbose=False, storage=storage, tracking_uri=tracking_uri
    ).fit(data=digits_small, epochs=3)
    return SimpleNamespace(
        result=result, study_name="reportable", storage=storage, tracking_uri=tracking_uri, root=root
    )


@pytest.fixture(scope="session")
def served_search(finished_search, tmp_path_factory):
    """A real `mlflow server` on the finished search's SQLite store; yields its base URL."""
    log = tmp_path_factory.mktemp("mlflow-server") / "mlflow.log"
    proc, uri = start_mlflow_server(finished_search.tracking_uri, log)
    yield uri
    stop_process_group(proc)
