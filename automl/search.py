"""The orchestrator: an Optuna study whose trials build and train Keras models, logged to MLflow."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from .builder import validate_space
from .data import Dataset, make_dataset
from .results import FINISHED, SearchResult, leaderboard
from .space import SearchSpace, SpaceError, load_space
from .stores import open_storage
from .strategies import make_pruner, make_sampler
from .tracking import Tracker
from .training import default_objective, infer_direction, metric_names
from .isolation import IsolatedTrialRunner
from .recovery import reap_dead_trials
from .trial import TrialFailed, TrialRunner, TrialSettings

DEFAULT_SPACES = {"image": "image_cnn", "tabular": "tabular_mlp", "text": "text_cnn_rnn", "sequence": "sequence_rnn"}
BUDGET_POLL_SECONDS = 1.0


class SearchError(ValueError):
    """Settings that cannot run (a study made with another space or data, a bad objective...)."""


class SurplusTrial(TrialFailed):
    """A trial started by two workers at once beyond the study's budget; it never trains."""


class Search:
    """Architecture + hyperparameter search.

    `max_trials` is the study's target number of finished (complete or pruned) trials, so running
    the same study again after an interruption finishes the rest, and a larger number extends it.
    """

    def __init__(self, space: str | Path | SearchSpace | None = None, *, study_name: str | None = None,
                 storage: str | None = None, tracking_uri: str | None = None, experiment: str | None = None,
                 sampler: str = "tpe", pruner: str = "median", seed: int | None = None,
                 objective: str | None = None, direction: str | None = None, max_trials: int = 10,
                 timeout: float | None = None, patience: int | None = 3, max_consecutive_failures: int = 10,
                 enqueue: list[dict[str, Any]] | None = None, verbose: bool = True,
                 on_trial: Callable | None = None, isolate: bool = False, memory_limit_mb: float | None = None,
                 retry_dead: bool = False, worker: int = 0):
        if max_trials < 1:
            raise SearchError(f"max_trials must be at least 1, not {max_trials}")
        if timeout is not None and timeout <= 0:
            raise SearchError(f"timeout must be positive seconds, not {timeout}")
        if direction not in (None, "maximize", "minimize"):
            raise SearchError(f"direction must be maximize or minimize, not {direction!r}")
        self.space = load_space(space) if space is not None else None
        self.study_name, self.storage, self.tracking_uri = study_name, storage, tracking_uri
        self.experiment, self.sampler, self.pruner, self.seed = experiment, sampler, pruner, seed
        self.objective, self.direction = objective, direction
        self.max_trials, self.timeout, self.patience = max_trials, timeout, patience
        self.max_consecutive_failures = max_consecutive_failures
        self.verbose, self.on_trial = verbose, on_trial
        self.enqueue = list(enqueue or [])  # known-good configurations, tried before sampling
        self.isolate, self.memory_limit_mb, self.retry_dead = isolate or bool(memory_limit_mb), memory_limit_mb, retry_dead
        self.worker = worker  # several workers with one --seed: each samples its own sequence
        make_sampler(sampler), make_pruner(pruner)  # fail on bad names now, not later

    def fit(self, x=None, y=None, *, data: Dataset | None = None, validation_data=None,
            validation_split: float = 0.2, epochs: int = 10, task: str | None = None,
            name: str = "arrays", kind: str | None = None) -> SearchResult:
        """Run trials until `max_trials` are finished or `timeout` passes; returns the result."""
        if data is None:
            if x is None:  # y may be None for a folder or a tf.data.Dataset: make_dataset checks
                raise SearchError("fit needs x and y (or data=Dataset)")
            data = make_dataset(x, y, validation_data=validation_data, validation_split=validation_split,
                                task=task, kind=kind, name=name, seed=self.seed or 0)
        if epochs < 1:
            raise SearchError(f"epochs must be at least 1, not {epochs}")
        space = self.space or load_space(DEFAULT_SPACES[data.kind])
        validate_space(space)
        self._check_space_fits(space, data)
        objective, direction = self._objective(data.task)

        if self.verbose:  # our progress lines replace Optuna's per-trial log lines
            optuna.logging.set_verbosity(optuna.logging.ERROR)
        study_name = self.study_name or f"{space.name}-{data.name}".replace(":", "-")
        tracker = Tracker(self.tracking_uri, experiment=self.experiment or study_name)  # fails before the study changes
        storage = open_storage(self.storage)
        seed = None if self.seed is None else self.seed + self.worker
        study_args = dict(study_name=study_name, storage=storage, direction=direction,
                          sampler=make_sampler(self.sampler, seed, self.max_trials), pruner=make_pruner(self.pruner))
        try:  # the worker that creates the study creates its MLflow parent run; the others join it
            study, created = optuna.create_study(**study_args), True
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.create_study(**study_args, load_if_exists=True), False
        self._check_or_record_study(study, space, data, objective, direction)
        for params in self.enqueue:
            study.enqueue_trial(params, skip_if_exists=True)
        study.set_user_attr("tracking_uri", tracker.tracking_uri)
        settings_params = {"space": space.source or space.name, "space_name": space.name, **data.describe(),
                           "objective": objective, "direction": direction, "sampler": self.sampler,
                           "pruner": self.pruner, "seed": self.seed, "epochs": epochs, "patience": self.patience}
        run_id = tracker.start_search(study, settings_params, {"automl.study": study_name}, join=not created)
        result = SearchResult(study, tracker.tracking_uri, run_id, objective, data)

        deadline = time.time() + self.timeout if self.timeout else None
        settings = TrialSettings(objective=objective, direction=direction, epochs=epochs,
                                 patience=self.patience, seed=self.seed, deadline=deadline)
        if self.isolate:
            runner = IsolatedTrialRunner(space, data, settings, tracker, study_name, self.storage, self.pruner,
                                         self.memory_limit_mb)
        else:
            runner = TrialRunner(space, data, settings, tracker, study_name)
        runner.gate = lambda trial: self._wait_for_budget(trial, tracker)
        done = _count(study, FINISHED)
        self._say(f"[bold]study[/] {study_name}: {done} of {self.max_trials} trials finished before this run; "
                  f"{data.summary()}; objective {objective} ({direction})")
        status = "FINISHED"
        try:
            self._run_trials(study, runner, tracker, objective)
        except BaseException:
            status = "KILLED"
            raise
        finally:
            self._finish(tracker, result, objective, status)
        return result

    # ------------------------------------------------------------ checks

    def _objective(self, task: str) -> tuple[str, str]:
        objective, direction = default_objective(task)
        if self.objective:
            known = metric_names(task)
            if self.objective not in known:
                raise SearchError(f"objective {self.objective!r} is not logged for {task} "
                                  f"(choose from {', '.join(known)})")
            objective, direction = self.objective, infer_direction(self.objective)
        return objective, self.direction or direction

    @staticmethod
    def _check_space_fits(space: SearchSpace, data: Dataset):
        if space.task and space.task != data.task:
            raise SpaceError([("task", f"the space is for {space.task} but the data is {data.task}")], space.source)
        if space.input and space.input != data.kind:
            raise SpaceError([("input", f"the space is for {space.input} input but the data is {data.kind} "
                                        f"(shape {data.input_shape})")], space.source)

    @staticmethod
    def _check_or_record_study(study: optuna.Study, space: SearchSpace, data: Dataset, objective: str, direction: str):
        expected = {"space_fingerprint": space.fingerprint(), "data_fingerprint": data.fingerprint(),
                    "objective": objective}
        attrs = study.user_attrs
        if study.direction.name.lower() != direction:
            raise SearchError(f"study {study.study_name!r} was created to {study.direction.name.lower()}; "
                              f"this search would {direction}. Use another --study name.")
        for key, value in expected.items():
            if key in attrs and attrs[key] != value:
                what = key.split("_")[0]
                raise SearchError(f"study {study.study_name!r} was run with a different {what} "
                                  f"({attrs[key]} != {value}); use another --study name to start a new study")
        for key, value in expected.items():
            if key not in attrs:
                study.set_user_attr(key, value)

    # ------------------------------------------------------------ the trial loop

    def _run_trials(self, study: optuna.Study, runner, tracker: Tracker, objective: str):
        """Trial after trial until the study holds `max_trials` finished ones, the timeout passes or
        too many fail in a row. Other workers may share the study: the budget is the study's."""
        started = time.time()
        self._stopping = None
        callbacks = [self._progress(objective), self._failure_guard()]
        while self._stopping is None:
            self._reap(study, tracker)
            finished = _count(study, FINISHED)
            if finished >= self.max_trials:
                break
            if self.timeout is not None and time.time() - started >= self.timeout:
                self._say(f"[yellow]stopping: the timeout of {self.timeout:g} s is reached[/]")
                break
            if finished + _count(study, (TrialState.RUNNING,)) >= self.max_trials:
                time.sleep(BUDGET_POLL_SECONDS)  # the rest of the budget is in flight on other workers
                continue
            study.optimize(runner, n_trials=1, catch=(Exception,), callbacks=callbacks)

    def _reap(self, study: optuna.Study, tracker: Tracker):
        end = lambda run_id, reason: tracker.end_run(run_id, "FAIL", reason)  # noqa: E731
        for number in reap_dead_trials(study, end, retry=self.retry_dead):
            self._say(f"[yellow]trial {number} was left RUNNING by a worker that died: marked failed"
                      f"{', its configuration enqueued again' if self.retry_dead else ''}[/]")

    def _wait_for_budget(self, trial: optuna.Trial, tracker: Tracker):
        """Two workers may start the study's last trial at the same moment: the later one waits, and
        steps aside (fails as surplus, before any training or MLflow run) if the other one finishes."""
        while True:
            trials = trial.study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
            if finished + ahead < self.max_trials:
                return
            if finished >= self.max_trials:
                reason = f"surplus: the study already has {finished} finished trials (max_trials {self.max_trials})"
                trial.set_user_attr("fail_reason", reason)
                self._stopping = reason
                raise SurplusTrial(reason)
            time.sleep(BUDGET_POLL_SECONDS)
            self._reap(trial.study, tracker)

    # ------------------------------------------------------------ callbacks

    def _progress(self, objective: str):
        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial):
            if self.on_trial:
                self.on_trial(study, trial)
            if not self.verbose:
                return
            n = _count(study, FINISHED)
            value = f"{objective}={trial.value:.4f}" if trial.value is not None else ""
            reason = trial.user_attrs.get("fail_reason", "")[:160]
            try:
                best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
            except ValueError:
                best = "no complete trial yet"
            color = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}.get(trial.state.name, "white")
            self._say(f"trial {trial.number:>3} [{color}]{trial.state.name:<8}[/] {value} {reason} "
                      f"| {n}/{self.max_trials} finished | {best}")
        return report

    def _failure_guard(self):
        def guard(study: optuna.Study, trial: optuna.trial.FrozenTrial):
            streak = 0
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number, reverse=True):
                if t.state == TrialState.FAIL:
                    streak += 1
                elif t.state in FINISHED:
                    break
            if streak >= self.max_consecutive_failures:
                self._stopping = f"{streak} trials failed in a row"
                self._say(f"[red]stopping: {streak} trials failed in a row; last reason: "
                          f"{trial.user_attrs.get('fail_reason')}[/]")
        return guard

    def _finish(self, tracker: Tracker, result: SearchResult, objective: str, status: str):
        study = result.study
        counts = {s.name.lower(): _count(study, (s,)) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        metrics = {f"trials_{k}": v for k, v in counts.items()}
        artifacts: dict[str, str] = {}
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "trials.csv"
            leaderboard(study, None).to_csv(table, index=False)
            artifacts[""] = str(table)
            if counts["complete"]:
                metrics[f"best_{objective}"] = study.best_value
                best = study.best_trial
                (Path(tmp) / "best_params.json").write_text(json.dumps(
                    {"trial": best.number, "value": best.value, "params": best.user_attrs.get("params", best.params)},
                    indent=2, default=str))
                artifacts["best"] = str(Path(tmp) / "best_params.json")
                try:
                    artifacts["best_model"] = str(result.best_model_path(Path(tmp) / "model"))
                except (FileNotFoundError, OSError, Exception) as exc:  # noqa: BLE001 - report, keep the rest
                    self._say(f"[yellow]best model not attached to the search run: {exc}[/]")
            others_running = _count(study, (TrialState.RUNNING,)) > 0  # other workers, still at work
            tracker.finish_search(status, metrics, artifacts, terminate=not others_running)
        self._say(f"search {study.study_name}: {counts['complete']} complete, {counts['pruned']} pruned, "
                  f"{counts['fail']} failed; MLflow run {tracker.parent_run_id}")

    def _say(self, text: str):
        if self.verbose:
            from rich.console import Console

            Console(stderr=True, highlight=False).print(text)


def _count(study: optuna.Study, states) -> int:
    return len(study.get_trials(deepcopy=False, states=states))
