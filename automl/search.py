"""The orchestrator: an Optuna study whose trials build and train Keras models, logged to MLflow."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from rich.markup import escape

from . import records
from .builder import validate_space
from .checks import check_and_record
from .cluster import RayCluster, describe, parse_resources
from .data import Dataset, attach_unlabeled, make_dataset
from .ensemble import KEEP_TOP
from .errors import NoCompleteTrial, ObjectiveError, SearchError, SpaceError, TrialFailed
from .isolation import RECYCLE_MB, IsolatedTrialRunner
from .objectives import default_objective, metric_names, parse_objectives
from .ranking import FINISHED, count
from .records import SearchSettings, TrialSettings
from .recovery import reap_dead_trials
from .results import SearchResult
from .schedule import SCHEDULES, BudgetSchedule
from .seeding import seed_study
from .space import SearchSpace, load_space
from .stores import default_storage_url, open_storage
from .strategies import SAMPLERS, check_names, make_pruner, make_sampler
from .summary import record_search_end
from .tracking import Tracker
from .trial import Runner, TrialRunner, frozen_heap

if TYPE_CHECKING:
    from .keras_tuner import HyperModelSpace
    from .progress import SearchProgress

__all__ = ["DEFAULT_SPACES", "Search", "SearchError"]

DEFAULT_SPACES = {"image": "image_cnn", "tabular": "tabular_mlp", "text": "text_cnn_rnn", "sequence": "sequence_rnn"}
BUDGET_POLL_SECONDS = 1.0
DEFAULT_TRIALS = 10  # max_trials when neither it nor a timeout is given
UNCAPPED_TRIALS = 100_000  # max_trials=None with a timeout: the budget, not a count, ends the search


class SurplusTrial(TrialFailed):
    """A trial started by two workers at once beyond the study's budget; it never trains."""


class Search:
    """Architecture + hyperparameter search.

    `max_trials` is the study's target number of finished (complete or pruned) trials, so running
    the same study again after an interruption finishes the rest, and a larger number extends it.
    None: 10, or with a `timeout` no cap, the time ends the search (bench/RESULTS.md "Suite").
    """

    def __init__(
        self,
        space: str | Path | SearchSpace | None = None,
        *,
        study_name: str | None = None,
        storage: str | None = None,
        tracking_uri: str | None = None,
        experiment: str | None = None,
        sampler: str = "tpe",
        pruner: str | None = None,
        seed: int | None = None,
        objective: str | None = None,
        direction: str | None = None,
        max_trials: int | None = None,
        timeout: float | None = None,
        patience: int | None = 3,
        max_consecutive_failures: int = 10,
        enqueue: list[dict[str, Any]] | None = None,
        verbose: bool = True,
        on_trial: Callable | None = None,
        isolate: bool | None = None,
        recycle_mb: float = RECYCLE_MB,
        memory_limit_mb: float | None = None,
        retry_dead: bool = False,
        worker: int = 0,
        objectives: list[str] | None = None,
        constraints: dict[str, float] | list[str] | None = None,
        max_epochs_total: int | None = None,
        warm_start: str | None = None,
        warm_start_top_k: int = 5,
        continue_from: str | None = None,
        hypermodel=None,
        fit_kwargs: dict | None = None,
        start: bool = True,
        ensemble: bool = False,
        ensemble_size: int = 20,
        schedule: str = "full",
        ray: str | None = None,
        workers: int = 1,
        resources_per_trial: dict[str, float] | None = None,
        check_data: bool = True,
        diagnostics: bool = True,
    ):
        if timeout is not None and timeout <= 0:
            raise SearchError(f"timeout must be positive seconds, not {timeout}")
        if direction not in (None, "maximize", "minimize"):
            raise SearchError(f"direction must be maximize or minimize, not {direction!r}")
        self.space = load_space(space) if space is not None else None
        self.study_name, self.storage, self.tracking_uri = study_name, storage, tracking_uri
        if schedule not in SCHEDULES:
            raise SearchError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
        # with a timeout, "budget" explores at low fidelity, then continues the best (automl.schedule)
        self.schedule = schedule
        pruner = pruner or ("successive-halving" if schedule == "budget" else "median")
        self.experiment, self.sampler, self.pruner, self.seed = experiment, sampler, pruner, seed
        self.objective, self.direction = objective, direction
        self.timeout, self.patience = timeout, patience
        self.max_trials = max_trials  # after the timeout, which decides what None means
        self.max_consecutive_failures = max_consecutive_failures
        self.verbose, self.on_trial = verbose, on_trial
        self.enqueue = list(enqueue or [])  # known-good configurations, tried before sampling
        self.start = start  # a new study first tries the space's `start` configurations
        # at the end, the top trials' weighted mean when it lowers the validation loss (automl.ensemble)
        self.ensemble, self.ensemble_size = ensemble, ensemble_size
        self.check_data = check_data  # checks.py at the start: duplicates, leakage, imbalance, label noise
        self.diagnostics = diagnostics  # diagnostics.py in every trial: gradients, activations, a diagnosis
        if ensemble_size < 1:
            raise SearchError(f"ensemble_size must be at least 1, not {ensemble_size}")
        # where trials train: None (default) a worker process replaced after `recycle_mb` of growth,
        # True a fresh process per trial, False this process (isolation.py says why)
        self.isolate, self.recycle_mb, self.memory_limit_mb = isolate, recycle_mb, memory_limit_mb
        self.retry_dead = retry_dead
        if memory_limit_mb and isolate is False:
            raise SearchError("memory_limit_mb needs trials in a worker process: drop isolate=False (--in-process)")
        if recycle_mb < 0:
            raise SearchError(f"recycle_mb must be 0 (a fresh process per trial) or more, not {recycle_mb}")
        self.worker = worker  # several workers with one --seed: each samples its own sequence
        # on a Ray cluster ("local", "auto" or an address): `workers` actors share the study (cluster.py)
        self.ray, self.workers = ray, workers
        self.cpus, self.gpus = parse_resources(resources_per_trial)
        if workers < 1 or (workers > 1 and not ray):
            raise SearchError(f"workers must be at least 1 and needs ray=... when above 1, not {workers}")
        self._driven = False  # a Ray worker's copy: the driver owns the parent run and the ensemble
        self._deadline_at: float | None = None  # the driver's deadline, for a Ray worker's copy
        self.objectives, self.constraints, self.max_epochs_total = objectives, constraints, max_epochs_total
        self.warm_start, self.warm_start_top_k, self.continue_from = warm_start, warm_start_top_k, continue_from
        if max_epochs_total is not None and max_epochs_total < 1:
            raise SearchError(f"max_epochs_total must be at least 1, not {max_epochs_total}")
        check_names(sampler, pruner)  # fail on bad names now, not later
        # a KerasTuner build_model(hp) / HyperModel in the place of a space
        self.hypermodel: HyperModelSpace | None = None
        if hypermodel is not None or fit_kwargs or SAMPLERS[sampler].keras_tuner:
            from .keras_tuner import check_search  # KerasTuner compatibility, both ways

            self.hypermodel, overrides = check_search(
                sampler,
                hypermodel,
                fit_kwargs,
                space=self.space,
                objectives=objectives,
                constraints=constraints,
                isolate=bool(self.isolate),
            )
            self.pruner = overrides.get("pruner", self.pruner)
        self._bar: SearchProgress | None = None  # while trials run and verbose (see _progress)
        self._stopping: str | None = None  # why the trial loop stops, set by its callbacks
        self._schedule: BudgetSchedule | None = None  # while a budget-scheduled search runs

    @property
    def max_trials(self) -> int:
        """Where the trial loop stops; `trial_cap` None (only a timeout given): the time ends it first."""
        return self.trial_cap or UNCAPPED_TRIALS

    @max_trials.setter
    def max_trials(self, value: int | None):
        if value is not None and value < 1:
            raise SearchError(f"max_trials must be at least 1, not {value}")
        self.trial_cap = value or (None if self.timeout is not None else DEFAULT_TRIALS)

    def fit(
        self,
        x=None,
        y=None,
        *,
        data: Dataset | None = None,
        validation_data=None,
        validation_split: float = 0.2,
        epochs: int = 10,
        task: str | None = None,
        name: str = "arrays",
        kind: str | None = None,
        unlabeled=None,
    ) -> SearchResult:
        """Run trials until `max_trials` are finished or `timeout` passes; returns the result.
        `unlabeled`: samples without labels (images or series like `x`) the space's `pretrain:` stage
        pretrains on (automl.pretraining)."""
        if data is None:
            if x is None:  # y may be None for a folder or a tf.data.Dataset: make_dataset checks
                raise SearchError("fit needs x and y (or data=Dataset)")
            data = (self.hypermodel.dataset if self.hypermodel else make_dataset)(
                x,
                y,
                validation_data=validation_data,
                validation_split=validation_split,
                task=task,
                kind=kind or getattr(self.space, "input", None),  # a text space reads a table's column as texts
                name=name,
                seed=self.seed or 0,
            )
        if unlabeled is not None:
            attach_unlabeled(data, unlabeled)
        if epochs < 1:
            raise SearchError(f"epochs must be at least 1, not {epochs}")
        space: SearchSpace | HyperModelSpace
        if self.hypermodel:
            if data.x_unlabeled is not None:
                raise SearchError("unlabeled data: a hypermodel builds its own models; pretraining needs a space")
            space = self.hypermodel
        else:
            space = (self.space or load_space(DEFAULT_SPACES[data.kind])).for_data(data.x_unlabeled is not None)
            validate_space(space)
            self._check_space_fits(space, data)
        objs = self._objectives(data.task)
        if self._deadline_at is not None:  # a Ray worker started (or restarted) after its driver
            self.timeout = max(1e-3, self._deadline_at - time.time())
        cluster = RayCluster(self.ray) if self.ray else None  # no Ray or no cluster: fails before writing
        if cluster is not None:
            cluster.check_fits(self.cpus, self.gpus)
        objective, direction = objs.primary, objs.directions[objs.names.index(objs.primary)]
        pruner = "none" if objs.multi else self.pruner  # Optuna cannot prune multi-objective trials

        # our progress lines (or, quiet, nothing) replace Optuna's per-trial lines and tracebacks: every
        # failure is on its trial (`fail_reason`) and its MLflow run (`traceback.txt`)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study_name = self.study_name or f"{space.name}-{data.name}".replace(":", "-")
        try:
            storage = open_storage(self.storage)  # a bad storage fails before anything is written
            tracker = Tracker(self.tracking_uri, experiment=self.experiment or study_name)  # before the study changes
        except BaseException:
            if cluster is not None:
                cluster.close()  # a `local` Ray instance must not outlive the failed start
            raise
        seed = None if self.seed is None else self.seed + self.worker
        sampler = make_sampler(
            self.sampler, seed, self.max_trials, space=space, objective=objective, direction=direction, epochs=epochs
        )
        study_args = {
            "study_name": study_name,
            "storage": storage,
            "directions": objs.directions,
            "sampler": sampler,
            "pruner": make_pruner(pruner, epochs),
        }
        try:  # the worker that creates the study creates its MLflow parent run; the others join it
            study, created = optuna.create_study(**study_args), True
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.create_study(**study_args, load_if_exists=True), False
        self._check_or_record_study(study, space, data, objs)
        own = self.enqueue or self.warm_start or self.continue_from  # the user seeded the study
        starts = getattr(space, "start", [])[: self.max_trials] if self.start and created and not own else []
        copied = seed_study(
            study,
            storage,
            space,
            created,
            [*self.enqueue, *starts],
            self.warm_start,
            self.warm_start_top_k,
            self.continue_from,
        )
        if copied:
            self._say(
                f"continued from {self.continue_from}: {copied} finished trials copied in "
                "(they teach the sampler and do not count towards max_trials)"
            )
        study.set_user_attr(records.TRACKING_URI, tracker.tracking_uri)
        study.set_user_attr(
            records.SETTINGS,
            SearchSettings(
                space=space.source or space.name,
                space_name=space.name,
                data=data.name,
                train_samples=data.num_train,
                val_samples=data.num_val,
                objective=objective,
                direction=direction,
                seed=self.seed,
                epochs=epochs,
                patience=self.patience,
            ).to_json(),
        )
        settings_params = {
            "space": space.source or space.name,
            "space_name": space.name,
            **data.describe(),
            "objective": objective,
            "direction": direction,
            "sampler": self.sampler,
            "pruner": pruner,
            "seed": self.seed,
            "epochs": epochs,
            "patience": self.patience,
            "objectives": ",".join(f"{n}:{d[:3]}" for n, d in zip(objs.names, objs.directions)),
            "constraints": ",".join(f"{k}<={v:g}" for k, v in objs.constraints.items()) or None,
            "max_trials": self.trial_cap,
            "timeout": self.timeout,
            "max_epochs_total": self.max_epochs_total,
            "schedule": self.schedule,
        }
        run_id = tracker.start_search(study, settings_params, {records.TAG_STUDY: study_name}, join=not created)
        result = SearchResult(study, tracker.tracking_uri, run_id, objective, data)
        if not self._driven and self.check_data:  # warnings shown; the whole report on the parent run
            for line in check_and_record(data, tracker.tracking_uri, run_id).summary(warnings_only=True):
                self._say(escape(line))

        deadline = time.time() + self.timeout if self.timeout else None
        settings = TrialSettings(
            objective=objective,
            direction=direction,
            epochs=epochs,
            patience=self.patience,
            seed=self.seed,
            deadline=deadline,
            objectives=objs if (objs.multi or objs.constraints or objs.costs) else None,
            keep_top=KEEP_TOP if self.ensemble and not objs.multi else 1,
            diagnostics=self.diagnostics,
        )
        budget = self.timeout if self.schedule == "budget" else None
        schedule = BudgetSchedule(budget, epochs, max_trials=self.trial_cap) if budget else None
        if schedule is not None and schedule.active and not objs.multi and not self.hypermodel:
            settings.keep_top = max(settings.keep_top, schedule.top)  # the candidates it may continue
        else:
            schedule = None
        runner: Runner | None = None
        if cluster is not None:
            pass  # the trials train in the Ray workers
        elif self.hypermodel or SAMPLERS[self.sampler].schedules_epochs:  # keras_tuner.py
            from .keras_tuner import make_runner

            runner = make_runner(self.hypermodel, space, data, settings, tracker, study_name)
        elif self.isolate is False:
            runner = TrialRunner(space, data, settings, tracker, study_name)
        else:
            assert isinstance(space, SearchSpace)  # a hypermodel trains in this process (above)
            recycle = 0 if self.isolate else self.recycle_mb
            runner = IsolatedTrialRunner(
                space, data, settings, tracker, study_name, self.storage, pruner, self.memory_limit_mb, recycle
            )

        def gate(trial: optuna.Trial):
            self._wait_for_budget(trial, tracker)
            if schedule is not None:
                schedule.before_trial(trial)

        if runner is not None:
            runner.gate = gate
        self._schedule = schedule
        done = count(study, FINISHED)
        goal = ", ".join(f"{n} ({d})" for n, d in zip(objs.names, objs.directions))
        wanted = f"of {self.trial_cap} " if self.trial_cap else ""
        self._say(
            f"[bold]study[/] {study_name}: {done} {wanted}trials finished before this run; "
            f"{data.summary()}; objective {goal}"
            + (f"; constraints {settings_params['constraints']}" if objs.constraints else "")
        )
        status = "FINISHED"
        try:
            with frozen_heap():
                if cluster is not None:
                    self._run_on_ray(cluster, study, tracker, objective, space, data, epochs)
                else:
                    assert runner is not None
                    self._run_trials(study, runner, tracker, objective)
            if count(study, (TrialState.COMPLETE,)) == 0:
                status = "FAILED"
        except BaseException:
            status = "KILLED"
            raise
        finally:
            if runner is not None:
                runner.close()
            if cluster is not None:
                cluster.close()
            if not self._driven:
                self._finish(tracker, result, objective, status)
        if status == "FAILED":
            raise NoCompleteTrial(study_name, self._last_failure(study), result)
        if self.ensemble and not objs.multi and not self._driven:
            self._ensemble(result, data)
        return result

    def _ensemble(self, result: SearchResult, data: Dataset):
        """Choose and log the ensemble now, so `result.ensemble()` and export find it ready. A failure
        here is reported and the search's result stands (the trials are all saved)."""
        try:
            result.ensemble(data, self.ensemble_size)
        except Exception as exc:
            self._say(f"[yellow]ensemble not made: {type(exc).__name__}: {exc}[/]")
            return
        choice = result.ensemble_choice
        if choice is not None and choice.helps:
            members = ", ".join(f"{n} x{w:.2f}" for n, w in zip(choice.members, choice.weights))
            self._say(
                f"ensemble of trials {members}: validation loss {choice.val_loss:.4f} "
                f"(best trial alone {choice.best_val_loss:.4f})"
            )
        else:
            self._say("ensemble: no mix of the top trials lowers the validation loss; the best trial stands alone")

    def _last_failure(self, study: optuna.Study) -> str:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        reason = failed[-1].user_attrs.get(records.FAIL_REASON) if failed else None
        return reason or self._stopping or "no trial finished (the timeout or the epoch budget came first)"

    # ------------------------------------------------------------ checks

    def _objectives(self, task: str):
        known, default = self.hypermodel.metrics() if self.hypermodel else (metric_names(task), default_objective(task))
        try:
            return parse_objectives(self.objectives or self.objective, known, default, self.direction, self.constraints)
        except ObjectiveError as exc:
            raise SearchError(str(exc)) from None

    @staticmethod
    def _check_space_fits(space: SearchSpace, data: Dataset):
        if space.task and space.task != data.task:
            raise SpaceError([("task", f"the space is for {space.task} but the data is {data.task}")], space.source)
        if space.input and space.input != data.kind:
            raise SpaceError(
                [
                    (
                        "input",
                        f"the space is for {space.input} input but the data is {data.kind} (shape {data.input_shape})",
                    )
                ],
                space.source,
            )

    @staticmethod
    def _check_or_record_study(study: optuna.Study, space: SearchSpace | HyperModelSpace, data: Dataset, objs):
        expected = {
            records.SPACE_FINGERPRINT: space.fingerprint(),
            records.DATA_FINGERPRINT: data.fingerprint(),
            records.OBJECTIVE: objs.primary,
            records.OBJECTIVE_NAMES: objs.names,
            records.STUDY_CONSTRAINTS: objs.constraints,
        }
        attrs = study.user_attrs
        had = [d.name.lower() for d in study.directions]
        if had != objs.directions:
            raise SearchError(
                f"study {study.study_name!r} was created to {', '.join(had)}; "
                f"this search would {', '.join(objs.directions)}. Use another --study name."
            )
        for key, value in expected.items():
            if key in attrs and attrs[key] != value:
                what = key.split("_")[0]
                raise SearchError(
                    f"study {study.study_name!r} was run with a different {what} "
                    f"({attrs[key]} != {value}); use another --study name to start a new study"
                )
        for key, value in {**expected, records.DATA_SCHEMA: data.schema()}.items():  # the schema is not compared
            if key not in attrs:
                study.set_user_attr(key, value)

    # ------------------------------------------------------------ the trial loop

    def _run_trials(self, study: optuna.Study, runner, tracker: Tracker, objective: str):
        """Trial after trial until the study holds `max_trials` finished ones, the timeout passes or
        too many fail in a row. Other workers may share the study: the budget is the study's."""
        started = time.time()
        self._stopping = None
        callbacks = [self._progress(objective, study), self._failure_guard()]
        while self._stopping is None:
            self._reap(study, tracker)
            finished = count(study, FINISHED)
            if finished >= self.max_trials:
                break
            if self.timeout is not None and time.time() - started >= self.timeout:
                self._say(f"[yellow]stopping: the timeout of {self.timeout:g} s is reached[/]")
                break
            if self.max_epochs_total is not None:
                used = sum(
                    t.user_attrs.get(records.EPOCHS_RUN, 0)
                    for t in study.get_trials(deepcopy=False)
                    if records.COPIED_FROM not in t.user_attrs
                )
                if used >= self.max_epochs_total:
                    self._say(
                        f"[yellow]stopping: {used} epochs trained, max_epochs_total is {self.max_epochs_total}[/]"
                    )
                    break
                runner.settings.epochs_left = self.max_epochs_total - used
            if self._schedule is not None and not self._schedule.next(study):
                self._say(f"[yellow]stopping: budget schedule: {self._schedule.reason}[/]")
                break
            if finished + count(study, (TrialState.RUNNING,)) >= self.max_trials:
                time.sleep(BUDGET_POLL_SECONDS)  # the rest of the budget is in flight on other workers
                continue
            study.optimize(runner, n_trials=1, catch=(Exception,), callbacks=callbacks)

    def _run_on_ray(self, cluster: RayCluster, study: optuna.Study, tracker: Tracker, objective, space, data, epochs):
        """`workers` Ray actors, each a copy of this search (its own worker index, quiet, joining this
        study and parent run, ending at this search's deadline); this process shows their trials."""
        deadline = time.time() + self.timeout if self.timeout else None
        copies = []
        for i in range(self.workers):
            worker = copy.copy(self)
            worker.ray, worker.workers, worker.verbose, worker.on_trial = None, 1, False, None
            worker.worker, worker.space = self.worker + i, space if isinstance(space, SearchSpace) else self.space
            worker.study_name, worker.storage = study.study_name, self.storage or default_storage_url()
            worker.tracking_uri, worker._driven, worker._deadline_at = tracker.tracking_uri, True, deadline
            worker.enqueue, worker.warm_start, worker.continue_from = [], None, None  # seeded here
            copies.append(worker)
        self._say(f"Ray: {len(copies)} workers ({self.cpus:g} CPU, {self.gpus:g} GPU each) on {cluster.address}")
        outcomes = cluster.run(
            copies, data, epochs, study, self.cpus, self.gpus, self._progress(objective, study),
            lambda: self._reap(study, tracker), _ender(tracker),
        )  # fmt: skip
        self._say(f"Ray workers: {describe(outcomes)}")

    def _reap(self, study: optuna.Study, tracker: Tracker):
        for number in reap_dead_trials(study, _ender(tracker), retry=self.retry_dead):
            self._say(
                f"[yellow]trial {number} was left RUNNING by a worker that died: marked failed"
                f"{', its configuration enqueued again' if self.retry_dead else ''}[/]"
            )

    def _wait_for_budget(self, trial: optuna.Trial, tracker: Tracker):
        """Two workers may start the study's last trial at the same moment: the later one waits, and
        steps aside (fails as surplus, before any training or MLflow run) if the other one finishes."""
        while True:
            trials = [t for t in trial.study.get_trials(deepcopy=False) if records.COPIED_FROM not in t.user_attrs]
            finished = sum(t.state in FINISHED for t in trials)
            ahead = sum(t.state == TrialState.RUNNING and t.number < trial.number for t in trials)
            if finished + ahead < self.max_trials:
                return
            if finished >= self.max_trials:
                reason = f"surplus: the study already has {finished} finished trials (max_trials {self.max_trials})"
                trial.set_user_attr(records.FAIL_REASON, reason)
                self._stopping = reason
                raise SurplusTrial(reason)
            time.sleep(BUDGET_POLL_SECONDS)
            self._reap(trial.study, tracker)

    # ------------------------------------------------------------ callbacks

    def _progress(self, objective: str, study: optuna.Study):
        """`on_trial`, then the progress bar / one line per finished trial (automl.progress)."""
        from .plots import prewarm
        from .progress import SearchProgress

        prewarm()  # the end-of-search plots' imports load while trials train
        self._bar = None
        if self.verbose:
            done, title = count(study, FINISHED), study.study_name
            self._bar = SearchProgress(self.trial_cap, objective, timeout=self.timeout, title=title, done_before=done)

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial):
            if self.on_trial:
                self.on_trial(study, trial)
            if self._bar is not None:
                self._bar.trial_finished(study, trial)

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
                self._say(
                    f"[red]stopping: {streak} trials failed in a row; last reason: "
                    f"{trial.user_attrs.get(records.FAIL_REASON)}[/]"
                )

        return guard

    def _finish(self, tracker: Tracker, result: SearchResult, objective: str, status: str):
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
        record_search_end(tracker, result, objective, status, self._say if self.verbose else None)

    def _say(self, text: str):
        if self.verbose:
            from .progress import say

            say(text, self._bar)


def _ender(tracker: Tracker) -> Callable[[str, str], None]:
    """Ends a dead or stopped trial's MLflow run (KILLED, state FAIL, with the reason)."""
    return lambda run_id, reason: tracker.end_run(run_id, "FAIL", reason)
