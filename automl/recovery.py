"""Dead trials: a worker killed mid-trial (kill -9, the OOM killer, a reboot) leaves its trial RUNNING.

Every trial records its owner (host, pid, process start time) as its first act. Before each trial a
worker reaps RUNNING trials that are dead: on this host, an owner process that no longer exists; on
RDB storages (PostgreSQL, SQLite, MySQL), also a stopped Optuna heartbeat, which covers other
machines. A dead trial becomes FAIL with a reason, its MLflow run ends as KILLED (never left
RUNNING), and, when asked, its parameters are enqueued again so the search retries it.

`AUTOML_HOST` replaces the host name recorded and compared: give each worker its own when workers
share a host name but not a process table (containers on the host's network), so that no worker
takes another's live pid for a dead one.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import sys
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from . import records

UNOWNED_GRACE_SECONDS = 120  # a trial is stamped with its owner within milliseconds of its creation
RAY_NODE_ENV, RAY_ACTOR_ENV = "AUTOML_RAY_NODE", "AUTOML_RAY_ACTOR"  # set in a Ray worker (cluster.py)


def host_name() -> str:
    """The name of the process table this worker's pids belong to: `AUTOML_HOST`, else the host name."""
    return os.environ.get("AUTOML_HOST") or socket.gethostname()


def worker_id() -> str:
    """The process that trains a trial, as `host:pid`, plus `ray-node:N/actor:A` (8-character id
    prefixes) inside a Ray worker (recorded on the trial and its MLflow run)."""
    base = f"{host_name()}:{os.getpid()}"
    node, actor = os.environ.get(RAY_NODE_ENV), os.environ.get(RAY_ACTOR_ENV)
    return f"{base} ray-node:{node[:8]}/actor:{actor[:8]}" if node and actor else base


def owner_record() -> dict:
    """Who runs this trial: enough to tell later whether that process is still alive."""
    import psutil

    pid = os.getpid()
    owner = {"host": host_name(), "pid": pid, "started": round(psutil.Process(pid).create_time(), 2)}
    if os.environ.get(RAY_NODE_ENV):
        owner["ray_node"], owner["ray_actor"] = os.environ[RAY_NODE_ENV], os.environ.get(RAY_ACTOR_ENV)
    return owner


def dead_ray_nodes() -> set[str]:
    """Ids of the dead nodes of the Ray cluster this process belongs to (none outside Ray)."""
    ray = sys.modules.get("ray")  # never imported here: only a process that runs on Ray has it
    if ray is None or not ray.is_initialized():
        return set()
    try:
        return {n["NodeID"] for n in ray.nodes() if not n["Alive"]}
    except Exception:  # the cluster's head is gone: other checks (pid, heartbeat) still stand
        return set()


def owner_alive(owner: dict | None) -> bool | None:
    """True/False for an owner on this host; None when it cannot be known from here."""
    import psutil

    if not owner or owner.get("host") != host_name():
        return None
    try:
        proc = psutil.Process(int(owner["pid"]))
        # pids are reused: the same pid with another start time is another process
        return abs(proc.create_time() - float(owner["started"])) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


def _is_dead(trial: optuna.trial.FrozenTrial, rdb: bool, stale: set[int], dead_nodes: set[str]) -> str | None:
    owner = trial.user_attrs.get(records.OWNER)
    if owner is not None and owner.get("ray_node") in dead_nodes:
        return f"Ray node {owner['ray_node'][:8]} died during the trial (worker pid {owner['pid']} on {owner['host']})"
    if trial._trial_id in stale:
        where = f" (pid {owner['pid']} on {owner['host']})" if owner else ""
        return f"worker{where} stopped sending heartbeats during the trial"
    if owner is not None and owner_alive(owner) is False:
        return f"worker process {owner['pid']} on {owner['host']} died during the trial"
    if owner is None and not rdb and trial.datetime_start is not None:
        age = (dt.datetime.now() - trial.datetime_start).total_seconds()
        if age > UNOWNED_GRACE_SECONDS:  # killed between creation and stamping
            return "worker died before the trial started"
    return None


def reap_dead_trials(
    study: optuna.Study, end_mlflow_run: Callable[[str, str], None] | None = None, retry: bool = False
) -> list[int]:
    """Fail the dead RUNNING trials of `study`; returns their numbers."""
    from optuna.storages import RDBStorage

    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # Optuna wraps RDB storages in a cache
    rdb = isinstance(backend, RDBStorage)
    stale: set[int] = set()
    if isinstance(backend, RDBStorage) and backend.heartbeat_interval:
        stale = set(backend._get_stale_trial_ids(study._study_id))
    dead_nodes = dead_ray_nodes()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = _is_dead(trial, rdb, stale, dead_nodes)
        if reason is None or not _fail(storage, trial, reason):
            continue
        reaped.append(trial.number)
    if reaped:
        _after_reaping(study, reaped, end_mlflow_run, retry)
    return sorted(set(reaped))


def fail_trials_of(
    study: optuna.Study,
    owned: Callable[[dict], bool],
    reason: str,
    end_mlflow_run: Callable[[str, str], None] | None = None,
) -> list[int]:
    """Fail the RUNNING trials whose owner record `owned` accepts (workers this process stopped)."""
    numbers = [
        t.number
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if owned(t.user_attrs.get(records.OWNER) or {}) and _fail(study._storage, t, reason)
    ]
    if numbers:
        _after_reaping(study, numbers, end_mlflow_run, retry=False)
    return numbers


def _fail(storage, trial: optuna.trial.FrozenTrial, reason: str) -> bool:
    """Mark one RUNNING trial FAIL with its reason; False when another worker settled it first."""
    try:
        storage.set_trial_user_attr(trial._trial_id, records.FAIL_REASON, reason)
        return bool(storage.set_trial_state_values(trial._trial_id, TrialState.FAIL))
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError):
        return False


def _after_reaping(study, numbers, end_mlflow_run, retry: bool):
    for trial in study.get_trials(deepcopy=False):
        if trial.number not in numbers:
            continue
        run_id = trial.user_attrs.get(records.MLFLOW_RUN_ID)
        if run_id and end_mlflow_run:
            end_mlflow_run(run_id, trial.user_attrs.get(records.FAIL_REASON, "worker died (heartbeat stopped)"))
        if retry and trial.params:
            study.enqueue_trial(trial.params, user_attrs={records.RETRY_OF: trial.number})
