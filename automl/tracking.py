"""MLflow: one parent run per search, one nested run per trial.

Uses `MlflowClient` with explicit run ids (no global active run), so several searches or
threads never mix their runs. Per-epoch metrics are buffered and written in batches.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time

from . import records
from .errors import StoreError
from .stores import default_artifact_location, default_tracking_uri

MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
JOIN_WAIT_SECONDS = 60


def optuna_user_attrs(study) -> dict:
    """Fresh study user attributes (another process may have just set one)."""
    return study._storage.get_study_user_attrs(study._study_id)


def _client(uri: str):
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # table-creation chatter

    return MlflowClient(tracking_uri=uri)


def _probe_server(uri: str, timeout: float = 10.0):
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout)
    except urllib.error.HTTPError:
        pass  # it answered: a server without /health is still a server
    except (urllib.error.URLError, OSError) as exc:
        raise StoreError(f"cannot reach the MLflow tracking server {uri}: {getattr(exc, 'reason', exc)}") from None


class Tracker:
    """Creates and ends the MLflow runs of one search."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "automl", flush_seconds: float = 10.0):
        self.tracking_uri = tracking_uri or default_tracking_uri()
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.flush_seconds = flush_seconds
        if self.tracking_uri.startswith(("http://", "https://")):
            _probe_server(self.tracking_uri)  # MLflow's own retries take minutes to give up
        try:
            self.client = _client(self.tracking_uri)
            self.experiment_id = self._experiment(experiment)
        except Exception as exc:  # bad URI, server down, locked database
            raise StoreError(f"cannot use MLflow tracking URI {self.tracking_uri!r}: {exc}") from None
        self.parent_run_id: str | None = None

    @classmethod
    def attach(cls, tracking_uri: str, experiment_id: str, parent_run_id: str, flush_seconds: float = 10.0):
        """The tracker of a running search, in another process (a trial's child process)."""
        tracker = cls.__new__(cls)
        tracker.tracking_uri, tracker.flush_seconds = tracking_uri, flush_seconds
        tracker.client, tracker.experiment_id = _client(tracking_uri), experiment_id
        tracker.parent_run_id = parent_run_id
        return tracker

    @property
    def search_run_id(self) -> str:
        """The parent run's id, for calls that need it set (by `start_search` or `attach`)."""
        if self.parent_run_id is None:
            raise RuntimeError("the search's MLflow run is not started yet (Tracker.start_search)")
        return self.parent_run_id

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            # the kind tag opens the MLflow 3 UI on its runs table ("Model training"), not the GenAI view
            return self.client.create_experiment(
                name,
                artifact_location=default_artifact_location(self.tracking_uri),
                tags={records.TAG_EXPERIMENT_KIND: "custom_model_development"},
            )
        except MlflowException:  # another worker created it first
            return self.client.get_experiment_by_name(name).experiment_id

    # ------------------------------------------------------------ parent run

    def start_search(self, study, params: dict[str, Any], tags: dict[str, str], join: bool = False) -> str:
        """Create the parent run, or reuse the one recorded on the study (resuming, or `join`ing a
        study that another worker created: that worker creates the run, this one waits for it)."""
        run_id = study.user_attrs.get(records.PARENT_RUN)
        deadline = time.time() + JOIN_WAIT_SECONDS
        while join and not run_id and time.time() < deadline:
            time.sleep(0.5)
            run_id = optuna_user_attrs(study).get(records.PARENT_RUN)
        if run_id and self._run_exists(run_id):
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=study.study_name, tags={records.TAG_ROLE: "search", **tags}
            )
            run_id = run.info.run_id
            study.set_user_attr(records.PARENT_RUN, run_id)
        self.parent_run_id = run_id
        self.log_params(run_id, params)
        return run_id

    def _run_exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.experiment_id == self.experiment_id and run.info.lifecycle_stage == "active"

    def finish_search(
        self, status: str, metrics: Mapping[str, float], artifacts: dict[str, str] | None = None, terminate: bool = True
    ):
        """Final metrics and artifacts; the run stays RUNNING (`terminate=False`) while other
        workers still run trials of the study: the last one to finish ends it."""
        run_id = self.search_run_id
        self.log_metrics(run_id, metrics)
        for artifact_path, local in (artifacts or {}).items():
            self.client.log_artifact(run_id, local, artifact_path or None)
        if terminate:
            self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------ trial runs

    def start_trial(self, number: int, study_name: str, params: dict[str, Any], worker: str = "") -> TrialRun:
        """The trial's child run, tagged with who trains it from the start (a killed run says where)."""
        tags = {records.TAG_TRIAL_NUMBER: str(number), records.TAG_STUDY: study_name, records.TAG_WORKER: worker}
        return self._start_child(f"trial-{number:03d}", "trial", tags, params)

    # ------------------------------------------------------------ pretraining runs

    def start_pretrain(self, key: str, params: dict[str, Any]) -> TrialRun:
        """A pretraining's run under the search's run (`pretrain-<key>`), ended like a trial's."""
        return self._start_child(f"pretrain-{key[:8]}", "pretrain", {records.TAG_PRETRAIN_KEY: key}, params)

    def _start_child(self, name: str, role: str, tags: dict[str, str], params: dict[str, Any]) -> TrialRun:
        """A RUNNING run under the search's run, with its role, tags and params."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                records.TAG_PARENT_RUN: self.search_run_id,
                records.TAG_ROLE: role,
                records.TAG_STATE: "RUNNING",
                **tags,
            },
        )
        self.log_params(run.info.run_id, params)
        return TrialRun(self, run.info.run_id)

    def find_pretrain(self, key: str) -> str | None:
        """The finished pretraining run of this search with `key`, if another trial (or worker) made one."""
        runs = self._pretrainings(f"tags.`{records.TAG_PRETRAIN_KEY}` = '{key}'", 1)
        return runs[0].info.run_id if runs else None

    def pretrain_seconds(self) -> list[float]:
        """How long this search's finished pretrainings took (what the next one may take)."""
        return [
            r.data.metrics["pretrain_seconds"]
            for r in self._pretrainings("", 100)
            if "pretrain_seconds" in r.data.metrics
        ]

    def _pretrainings(self, condition: str, limit: int) -> list:
        where = f"tags.`{records.TAG_PARENT_RUN}` = '{self.search_run_id}' and attributes.status = 'FINISHED'"
        where += f" and tags.`{records.TAG_ROLE}` = 'pretrain'" + (f" and {condition}" if condition else "")
        return self.client.search_runs([self.experiment_id], filter_string=where, max_results=limit)

    def end_run(self, run_id: str, state: str, reason: str):
        """End a trial's run that its own process could not end (it died); never leave it RUNNING.
        A run its process ended FINISHED in the moment before its result could reach the study
        (a Ray actor killed just after its trial finished training) is ended again with the
        trial's fate: a CI run had a FAIL trial whose MLflow run said FINISHED. A run that says
        FAILED or KILLED already has its own reason."""
        from mlflow.exceptions import MlflowException

        try:
            if self.client.get_run(run_id).info.status not in ("RUNNING", "FINISHED"):
                return
            self.set_tags(run_id, {records.TAG_STATE: state, records.TAG_FAIL_REASON: reason})
            self.client.set_terminated(run_id, status="KILLED")
        except MlflowException:
            pass  # a run that is gone cannot be left RUNNING either

    # ------------------------------------------------------------ helpers

    def log_params(self, run_id: str, params: dict[str, Any]):
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params if params else {}
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float | None], step: int = 0):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])

    def set_tags(self, run_id: str, tags: dict[str, Any]):
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


class TrialRun:
    """The nested run of one trial: buffered epoch metrics, final metrics, state tags."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id
        self._pending: list = []
        self._last_flush = time.monotonic()

    def log_epoch(self, epoch: int, logs: dict[str, float]):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending += [Metric(k, float(v), now, epoch) for k, v in logs.items()]
        if time.monotonic() - self._last_flush >= self.tracker.flush_seconds:
            self.flush()

    def flush(self):
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), MAX_METRICS_PER_BATCH):
            self.tracker.client.log_batch(self.run_id, metrics=pending[i : i + MAX_METRICS_PER_BATCH])
        self._last_flush = time.monotonic()

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None):
        self.tracker.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_text(self, text: str, artifact_file: str):
        self.tracker.client.log_text(self.run_id, text, artifact_file)

    def finish(self, state: str, metrics: dict[str, float] | None = None, tags: dict[str, Any] | None = None):
        """state: COMPLETE, PRUNED, FAIL or KILLED (Optuna's words); MLflow status follows."""
        from mlflow.entities import Metric, RunTag

        self.flush()
        now = int(time.time() * 1000)
        all_tags = {records.TAG_STATE: state, **(tags or {})}
        self.tracker.client.log_batch(
            self.run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None],
            tags=[RunTag(k, str(v)[:5000]) for k, v in all_tags.items()],
        )
        status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}.get(state, "KILLED")
        self.tracker.client.set_terminated(self.run_id, status=status)


# ---------------------------------------------------------------- reading and adding to finished runs
# Export, plots, reports and results reach MLflow only through these functions.


def download_artifact(tracking_uri: str, run_id: str, artifact_path: str, dst: str | Path) -> str:
    """One artifact (file or folder) of a run, downloaded under `dst`; returns its local path."""
    return _client(tracking_uri).download_artifacts(run_id, artifact_path, str(dst))


def has_artifact(tracking_uri: str, run_id: str, folder: str, name: str) -> bool:
    return any(f.path.endswith(name) for f in _client(tracking_uri).list_artifacts(run_id, folder))


def metric_history(tracking_uri: str, run_id: str, metric: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, by step."""
    history = _client(tracking_uri).get_metric_history(run_id, metric)
    return [(h.step, h.value) for h in sorted(history, key=lambda h: h.step)]


def run_facts(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """A run's experiment name, status and parameters."""
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    return {
        "experiment": client.get_experiment(run.info.experiment_id).name,
        "status": run.info.status,
        "params": dict(run.data.params),
        "metrics": sorted(run.data.metrics),  # names (the latest values are not what plots want)
    }


def log_to_run(
    tracking_uri: str,
    run_id: str,
    metrics: dict[str, float],
    tags: dict[str, Any],
    artifacts: tuple[str | Path, str] | None = None,
) -> None:
    """Metrics (step 0), tags and a folder of artifacts (`(local folder, artifact path)`) onto a run."""
    from mlflow.entities import Metric, RunTag

    client, now = _client(tracking_uri), int(time.time() * 1000)
    items = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(items), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])
    if tags:
        client.log_batch(run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])
    if artifacts is not None:
        client.log_artifacts(run_id, str(artifacts[0]), artifacts[1])


def log_child_run(
    tracking_uri: str,
    parent_run_id: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, Any],
    artifact_dir: str | Path,
) -> str:
    """A finished run nested under `parent_run_id` (same experiment) with params, metrics, tags and
    a folder of artifacts; returns its id (an ensemble, a refit model)."""
    from mlflow.entities import Metric, Param, RunTag

    client, now = _client(tracking_uri), int(time.time() * 1000)
    parent = client.get_run(parent_run_id)
    run = client.create_run(parent.info.experiment_id, run_name=run_name, tags={records.TAG_PARENT_RUN: parent_run_id})
    run_id = run.info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None and v == v],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()],
    )
    client.log_artifacts(run_id, str(artifact_dir))
    client.set_terminated(run_id, status="FINISHED")
    return run_id


def register_model_version(
    tracking_uri: str, name: str, run_id: str, artifact_path: str, tags: dict[str, str], description: str
) -> dict[str, Any]:
    """A Model Registry version whose source is a folder of the run's artifacts (the registered
    model is created on first use)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.create_registered_model(name, description="automl exports: .keras, SavedModel and TFLite variants")
    except MlflowException as exc:
        if "already exists" not in str(exc).lower() and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise
    version = client.create_model_version(
        name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags, description=description
    )
    return {"name": name, "version": int(version.version)}
