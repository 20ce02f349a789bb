"""`automl ui`'s MLflow server as a managed process group: wait until it serves, find the runs table to
open, stop the server and every worker it started (uvicorn, the job runner) together."""

from __future__ import annotations

from .errors import StoreError


def wait_until_serving(base: str, server) -> bool:
    """Poll the server's /health until it answers (True) or it exits (False: it printed why)."""
    import time
    import urllib.request

    while server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def runs_page(base: str, study: str | None, uri: str) -> str:
    """Address of the runs table of `study`'s experiment (named after the study) or of the experiment with
    the latest run. MLflow 3 opens an experiment's own address on its GenAI overview, without the trials."""
    import json
    import urllib.request

    def api(path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.load(r)

    try:
        experiments = api("experiments/search", {"max_results": 1000}).get("experiments", [])
    except (OSError, ValueError):
        return base
    if study:
        found = [e["experiment_id"] for e in experiments if e["name"] == study]
        if not found:
            names = ", ".join(e["name"] for e in experiments)
            raise StoreError(
                f"--study {study}: no MLflow experiment of that name in {uri} (experiments: {names or 'none'})"
            )
        return f"{base}/#/experiments/{found[0]}/runs"
    try:
        latest = api(
            "runs/search",
            {
                "experiment_ids": [e["experiment_id"] for e in experiments],
                "order_by": ["attributes.start_time DESC"],
                "max_results": 1,
            },
        ).get("runs")
    except (OSError, ValueError):
        return base
    return f"{base}/#/experiments/{latest[0]['info']['experiment_id']}/runs" if latest else base


def stop_process_group(proc, grace: float = 10.0):
    """SIGTERM to the process group of `proc` (its own session), SIGKILL to what still runs after `grace` s."""
    import os
    import signal
    import time

    import psutil

    try:
        members = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []

    def running(p) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and (proc.poll() is None or any(running(p) for p in members)):
            time.sleep(0.1)
        if not any(running(p) for p in members):
            break
    proc.wait()
