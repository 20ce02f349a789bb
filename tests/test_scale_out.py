"""Scale-out on existing engines: three `automl search` workers share one study on a real PostgreSQL
(Optuna's RDB storage with heartbeats) and log to one real `mlflow server` backed by PostgreSQL.

Needs a PostgreSQL superuser URL in AUTOML_TEST_POSTGRES; `.ci/postgres.sh` installs Debian's
PostgreSQL, starts it and prints that URL (`.ci/run` does this before the suite).
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import mlflow_runs, require
from optuna.trial import TrialState
from test_reliability import SPACE

PG = os.environ.get("AUTOML_TEST_POSTGRES")
AUTOML = str(Path(sys.executable).parent / "automl")


@pytest.fixture(autouse=True)
def _needs_postgres():
    require(PG, "AUTOML_TEST_POSTGRES not set: run .ci/postgres.sh (CI does)")


def _database(name: str) -> str:
    import psycopg

    conn = psycopg.connect(PG, autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return PG.rsplit("/", 1)[0] + "/" + name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_stores(tmp_path):
    tag = uuid.uuid4().hex[:8]
    optuna_url, mlflow_db = _database(f"optuna_{tag}"), _database(f"mlflow_{tag}")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            mlflow_db,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--artifacts-destination",
            (tmp_path / "artifacts").as_uri(),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "mlflow.log", "w"),  # noqa: SIM115 - the server writes to it while it runs
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.time() > deadline:
                server.kill()
                pytest.fail(f"mlflow server did not start: {(tmp_path / 'mlflow.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield optuna_url, uri
    server.terminate()
    server.wait(timeout=30)


def test_three_workers_share_one_study_on_postgresql(tmp_path, postgres_stores):
    optuna_url, tracking_uri = postgres_stores
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    total = 6
    workers = [
        subprocess.Popen(
            [
                AUTOML,
                "search",
                str(space),
                "--data",
                "digits",
                "--trials",
                str(total),
                "--epochs",
                "15",
                "--study",
                "shared",
                "--storage",
                optuna_url,
                "--tracking-uri",
                tracking_uri,
                "--seed",
                "0",
                "--worker",
                str(i),
                "--pruner",
                "none",
                "-q",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"},
        )
        for i in range(3)
    ]
    for w in workers:
        _, stderr = w.communicate(timeout=600)
        assert w.returncode == 0, stderr[-3000:]

    study = optuna.load_study(study_name="shared", storage=optuna_url)
    trials = study.trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == total, [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    others = [t for t in trials if t not in finished]
    assert all(t.state == TrialState.FAIL and t.user_attrs["fail_reason"].startswith("surplus") for t in others)
    assert len({t.number for t in trials}) == len(trials)
    owners = {t.user_attrs["owner"]["pid"] for t in finished}
    assert len(owners) >= 2, "the work was shared between workers"
    firsts = {}  # each worker's first trial: per-worker seeds give different configurations
    for t in sorted(finished, key=lambda t: t.number):
        firsts.setdefault(t.user_attrs["owner"]["pid"], t.params)
    assert len({tuple(sorted(p.items())) for p in firsts.values()}) == len(firsts)

    client, runs = mlflow_runs(tracking_uri)
    parents = [r for r in runs if r.data.tags.get("automl.role") == "search"]
    children = [r for r in runs if r.data.tags.get("automl.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.info.run_id for r in children) == sorted(t.user_attrs["mlflow_run_id"] for t in finished)
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in children)
    assert all(r.info.status == "FINISHED" and "val_accuracy" in r.data.metrics for r in children)
    history = client.get_metric_history(children[0].info.run_id, "val_accuracy")
    assert len(history) >= 1
