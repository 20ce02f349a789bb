"""Trials in child processes: a segfault, `kill -9` or the OOM killer takes one trial, not the search.

The search process samples the configuration (no TensorFlow needed for that) and starts a child that
trains it, reporting epochs to the same Optuna storage and MLflow store. Children are forked from a
forkserver that has imported TensorFlow once, so a trial does not pay the ~7 s import again. A child
dies with its parent (PR_SET_PDEATHSIG), and an optional memory limit kills a child whose resident
memory grows past it, before the machine starts swapping.
"""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

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


@dataclass
class ChildJob:
    """Everything a child needs to run one trial; pickled into the child."""

    storage_url: str | None
    study_name: str
    pruner: str
    trial_id: int
    config: Configuration
    space: SearchSpace
    data: Dataset
    settings: TrialSettings
    tracking_uri: str
    experiment_id: str
    parent_run_id: str


def _die_with_parent():
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent still kills children it outlives
        pass


def _child_main(conn, job: ChildJob):
    _die_with_parent()
    from .stores import open_storage
    from .strategies import make_pruner
    from .tracking import Tracker
    from .trial import TrialRunner

    try:
        study = optuna.load_study(
            study_name=job.study_name,
            storage=open_storage(job.storage_url),
            pruner=make_pruner(job.pruner, job.settings.epochs),
        )
        trial = optuna.Trial(study, job.trial_id)
        tracker = Tracker.attach(job.tracking_uri, job.experiment_id, job.parent_run_id)
        runner = TrialRunner(job.space, job.data, job.settings, tracker, job.study_name)
        conn.send(("ok", runner.run(trial, job.config)))
    except optuna.TrialPruned as exc:
        conn.send(("pruned", str(exc)))
    except BaseException as exc:
        conn.send(("fail", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["automl.trial"])  # TensorFlow + Keras imported once, in the server
    return ctx


class IsolatedTrialRunner(Runner):
    """Objective for `study.optimize` that trains each trial in a child process."""

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
    ):
        super().__init__(space, data, settings, tracker, study_name)
        self.storage_url, self.pruner = storage_url, pruner
        self.memory_limit_mb = memory_limit_mb
        self.ctx = _context()
        self.current_pid: int | None = None  # the child in flight, for tests and `automl` status

    def run(self, trial: optuna.Trial, config: Configuration) -> float:
        job = ChildJob(
            self.storage_url,
            self.study_name,
            self.pruner,
            trial._trial_id,
            config,
            self.space,
            self.data,
            self.settings,
            self.tracker.tracking_uri,
            self.tracker.experiment_id,
            self.tracker.search_run_id,
        )
        receive, send = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_child_main, args=(send, job), name=f"automl-trial-{trial.number}", daemon=True)
        proc.start()
        send.close()
        self.current_pid = proc.pid
        try:
            outcome, killed_for = self._wait(proc, receive)
        except BaseException:
            proc.kill()
            proc.join()
            self._end_run(trial, "KILLED", "search interrupted")
            raise
        finally:
            self.current_pid = None
            receive.close()
        if outcome is None:
            reason = killed_for or _exit_reason(proc.exitcode)
            trial.set_user_attr(records.FAIL_REASON, reason)
            self._end_run(trial, "FAIL", reason)
            raise TrialFailed(reason)
        kind, value = outcome
        if kind == "ok":
            return value
        if kind == "pruned":
            raise optuna.TrialPruned(value)
        raise TrialFailed(value)

    def _wait(self, proc, receive):
        """The child's message, or None and why it died without one."""
        import psutil

        ps = psutil.Process(proc.pid)
        while True:
            if receive.poll(POLL_SECONDS):
                try:
                    outcome = receive.recv()
                except EOFError:
                    outcome = None
                proc.join()
                return outcome, None
            if not proc.is_alive():
                proc.join()
                return None, None
            if self.memory_limit_mb:
                try:
                    rss = ps.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                if rss > self.memory_limit_mb:
                    proc.kill()
                    proc.join()
                    return None, (
                        f"trial process killed: resident memory {rss:.0f} MB exceeded the "
                        f"memory limit of {self.memory_limit_mb:.0f} MB"
                    )

    def _end_run(self, trial: optuna.Trial, state: str, reason: str):
        """A child that died could not end its own MLflow run; end it here."""
        run_id = trial.study._storage.get_trial(trial._trial_id).user_attrs.get(
            records.MLFLOW_RUN_ID
        )  # set by the child
        if run_id:
            self.tracker.end_run(run_id, state, reason)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {code} without a result"
