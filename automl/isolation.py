"""Trials in worker processes: a segfault, `kill -9` or the OOM killer takes one trial, not the
search, and TensorFlow's memory never accumulates in the search process.

The search process samples each configuration; a worker process trains it, reporting epochs to the
same Optuna storage and MLflow store. Workers are forked from a forkserver that has imported
TensorFlow once, so a new worker does not pay the ~7 s import again.

Why workers are recycled: TensorFlow keeps every trained model's step graph after `clear_session`
(keras-team/keras#17458), about 8 MB per small trial. By default one worker trains trial after trial
(its MLflow client, storage connection and feature cache stay warm) until its resident memory has
grown by `recycle_mb` since its first trial, and is then replaced: memory stays bounded and the
start-up cost is paid rarely. `recycle_mb=0` starts a fresh worker for every trial (`--isolate`).
A worker ends within a second of its search process, and an optional memory limit kills one whose
resident memory grows past it, before the machine starts swapping.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from . import records
from .data import Dataset
from .errors import TrialFailed
from .records import TrialSettings
from .space import Configuration, SearchSpace
from .trial import Runner

if TYPE_CHECKING:
    from .tracking import Tracker

POLL_SECONDS = 0.2
WATCH_SECONDS = 0.5  # how often a worker checks that the search process still runs
MEMORY_LIMIT_SHARE = 0.75  # a worker left above this share of --memory-limit after a trial is replaced
RECYCLE_MB = 400  # default growth before a worker is replaced (bench/memory.py: ~8 MB per small trial)


@dataclass
class WorkerSetup:
    """What a worker needs for every trial it trains; pickled into it once."""

    storage_url: str | None
    study_name: str
    pruner: str
    space: SearchSpace
    data: Dataset
    settings: TrialSettings
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_pid: int  # the search process: the worker must not outlive it


def _die_with(search_pid: int):
    """A worker is the forkserver's child, not the search's: PR_SET_PDEATHSIG would fire only when the
    forkserver goes, which outlives a killed search. So a thread watches the search process and ends
    the worker at once when it is gone (its trial is then reaped as dead, its MLflow run KILLED)."""
    import threading
    import time

    import psutil

    started = psutil.Process(search_pid).create_time()

    def watch():
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                alive = psutil.Process(search_pid).create_time() == started
            except psutil.NoSuchProcess:
                alive = False
            if not alive:
                os._exit(1)

    threading.Thread(target=watch, name="automl-watch-search", daemon=True).start()


def _worker_main(conn, setup: WorkerSetup):
    """Train the trials the parent sends, one at a time, until it sends None or goes away."""
    from .stores import open_storage
    from .strategies import make_pruner
    from .tracking import Tracker
    from .trial import TrialRunner

    try:
        _die_with(setup.search_pid)
        study = optuna.load_study(
            study_name=setup.study_name,
            storage=open_storage(setup.storage_url),
            pruner=make_pruner(setup.pruner, setup.settings.epochs),
        )
        tracker = Tracker.attach(setup.tracking_uri, setup.experiment_id, setup.parent_run_id)
        runner = TrialRunner(setup.space, setup.data, setup.settings, tracker, setup.study_name)
    except BaseException as exc:
        conn.send(("fail", f"worker could not start: {type(exc).__name__}: {exc}"))
        return
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        trial_id, config, runner.settings = job
        try:
            conn.send(("ok", runner.run(optuna.Trial(study, trial_id), config)))
        except optuna.TrialPruned as exc:
            conn.send(("pruned", str(exc)))
        except Exception as exc:
            conn.send(("fail", f"{type(exc).__name__}: {exc}"))
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: report, then stop
            conn.send(("fail", f"{type(exc).__name__}: {exc}"))
            return


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Workers need nothing from the caller's script. Without this, multiprocessing would import the
    script again in every worker, and one without an `if __name__ == "__main__":` guard would start
    its search again there."""
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__: nothing to import
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _context():
    ctx = multiprocessing.get_context("forkserver")
    # TensorFlow, Keras, MLflow and Optuna's storages imported once, in the server: a new worker starts in
    # a fraction of a second
    ctx.set_forkserver_preload(["automl.isolation", "automl.tracking", "automl.stores", "mlflow.tracking"])
    return ctx


@dataclass
class _Worker:
    process: Any
    conn: Any
    ps: Any  # psutil.Process
    baseline_mb: float | None = None  # resident memory after its first trial


class IsolatedTrialRunner(Runner):
    """Objective for `study.optimize` that trains each trial in a worker process (see the module)."""

    def __init__(
        self,
        space: SearchSpace,
        data: Dataset,
        settings: TrialSettings,
        tracker: Tracker,
        study_name: str,
        storage_url: str | None,
        pruner: str,
        memory_limit_mb: float | None = None,
        recycle_mb: float = 0,
    ):
        super().__init__(space, data, settings, tracker, study_name)
        self.storage_url, self.pruner = storage_url, pruner
        self.memory_limit_mb, self.recycle_mb = memory_limit_mb, recycle_mb
        self.ctx = _context()
        self.worker: _Worker | None = None
        self.workers_started = 0

    def run(self, trial: optuna.Trial, config: Configuration) -> float:
        worker = self.worker or self._start()
        try:
            try:
                worker.conn.send((trial._trial_id, config, self.settings))
            except (BrokenPipeError, ConnectionResetError):  # it died between trials
                outcome, killed_for = None, None
            else:
                outcome, killed_for = self._wait(worker)
        except BaseException:
            self.close(kill=True)
            self._end_run(trial, "KILLED", "search interrupted")
            raise
        if outcome is None:
            reason = killed_for or _exit_reason(worker.process.exitcode)
            self.close(kill=True)
            trial.set_user_attr(records.FAIL_REASON, reason)
            self._end_run(trial, "FAIL", reason)
            raise TrialFailed(reason)
        self._recycle_if_grown(worker)
        kind, value = outcome
        if kind == "ok":
            return value
        if kind == "pruned":
            raise optuna.TrialPruned(value)
        raise TrialFailed(value)

    def _start(self) -> _Worker:
        import psutil

        setup = WorkerSetup(
            self.storage_url,
            self.study_name,
            self.pruner,
            self.space,
            self.data,
            self.settings,
            self.tracker.tracking_uri,
            self.tracker.experiment_id,
            self.tracker.search_run_id,
            os.getpid(),
        )
        parent_end, worker_end = self.ctx.Pipe(duplex=True)
        self.workers_started += 1
        proc = self.ctx.Process(
            target=_worker_main, args=(worker_end, setup), name=f"automl-worker-{self.workers_started}", daemon=True
        )
        with _without_main_module():
            proc.start()
        worker_end.close()
        self.worker = _Worker(proc, parent_end, psutil.Process(proc.pid))
        return self.worker

    def _recycle_if_grown(self, worker: _Worker):
        """A fresh worker per trial (`recycle_mb=0`), or when this one has grown by `recycle_mb`, or past
        MEMORY_LIMIT_SHARE of the memory limit: the leak of earlier trials must not get the next one killed."""
        import psutil

        if not self.recycle_mb:
            self.close()
            return
        try:
            rss = worker.ps.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            self.close(kill=True)
            return
        if worker.baseline_mb is None:
            worker.baseline_mb = rss
        elif rss - worker.baseline_mb > self.recycle_mb:
            self.close()
            return
        if self.memory_limit_mb and rss > MEMORY_LIMIT_SHARE * self.memory_limit_mb:
            self.close()

    def close(self, kill: bool = False):
        """Stop the worker (asked politely, unless `kill`); the next trial starts a new one."""
        worker, self.worker = self.worker, None
        if worker is None:
            return
        if not kill:
            try:
                worker.conn.send(None)
                worker.process.join(timeout=30)
            except (OSError, ValueError):
                pass
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.conn.close()

    def _wait(self, worker: _Worker):
        """The worker's message, or None and why it died without one."""
        import psutil

        while True:
            if worker.conn.poll(POLL_SECONDS):
                try:
                    return worker.conn.recv(), None
                except (EOFError, ConnectionResetError):  # it died while sending, or before
                    worker.process.join()
                    return None, None
            if not worker.process.is_alive():
                worker.process.join()
                return None, None
            if self.memory_limit_mb:
                try:
                    rss = worker.ps.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                if rss > self.memory_limit_mb:
                    worker.process.kill()
                    worker.process.join()
                    return None, (
                        f"trial process killed: resident memory {rss:.0f} MB exceeded the "
                        f"memory limit of {self.memory_limit_mb:.0f} MB"
                    )

    def _end_run(self, trial: optuna.Trial, state: str, reason: str):
        """A worker that died could not end its own MLflow run; end it here."""
        attrs = trial.study._storage.get_trial(trial._trial_id).user_attrs
        run_id = attrs.get(records.MLFLOW_RUN_ID)  # set by the worker
        if run_id:
            self.tracker.end_run(run_id, state, reason)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {code} without a result"
