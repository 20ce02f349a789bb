"""One trial: sample, build, compile, fit with callbacks, evaluate, log, clean up.

Every way of running a trial (here in the search process, in a child process: isolation.py, a
KerasTuner hypermodel or tuner: keras_tuner.py) is a `Runner`: the objective `study.optimize`
calls. The base class owns what they share: stamping the trial with its owner, the budget gate
and sampling the configuration; `run` trains it.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import optuna

from . import records, tracking
from .builder import build_model
from .compression import compress, wanted
from .diagnostics import Diagnostics, diagnose
from .errors import TrialFailed
from .feature_cache import FeatureCache
from .pretraining import PretrainCache
from .ranking import dominates, feasible, trial_key
from .records import TrialSettings
from .recovery import owner_record, worker_id
from .saved import load_model
from .space.pretrain import pretraining_wanted
from .training import TIEBREAK, best_epoch, fit_model, start_kept, training_settings

if TYPE_CHECKING:
    from .data import Dataset
    from .tracking import Tracker

MODEL_ARTIFACT = "model/model.keras"
PREDICTIONS_ARTIFACT = "predictions/val.npy"

__all__ = ["EpochMonitor", "Runner", "TrialFailed", "TrialRunner", "TrialSettings", "frozen_heap", "reclaim_memory"]


def reclaim_memory():
    """Keras' `clear_session(free_memory=True)` at a fraction of its cost between trials: its
    full garbage collection scans every object (TensorFlow, Keras, MLflow, the data, the graphs
    TF keeps of earlier models: ~0.5 M objects, 0.3-0.5 s per trial and growing). Freezing what
    survives a collection makes the next one scan only the last trial's objects (milliseconds).
    Freezing affects only the cycle collector; the search unfreezes at its end (`frozen_heap`)."""
    keras.backend.clear_session(free_memory=False)
    gc.collect()
    gc.freeze()


@contextmanager
def frozen_heap():
    """Bounds `reclaim_memory`'s freezing to a search: at the end the frozen objects go back to the
    collector, unless something else had frozen objects before (then they stay frozen)."""
    owner = gc.get_freeze_count() == 0
    try:
        yield
    finally:
        if owner:
            gc.unfreeze()


class EpochMonitor(keras.callbacks.Callback):
    """Logs epoch metrics, reports to the pruner, stops on NaN or at the deadline."""

    def __init__(self, trial, settings: TrialSettings, run, diagnostics: Diagnostics | None = None):
        super().__init__()
        self.trial, self.settings, self.run = trial, settings, run
        self.diagnostics = diagnostics  # gradients, weights, activations per epoch (diagnostics.py)
        self.history: list[dict] = []
        self.start_logs: dict | None = None  # validation logs of the weights training starts from (fit_model)
        self.epoch_seconds: list[float] = []  # each epoch's wall time, validation included
        self._epoch_started = 0.0
        self.nan_epoch = self.pruned_epoch = None
        self.stopped_by_deadline = False
        self.stopped_by: str | None = None

    def _held(self, value: float) -> float:
        """The objective of the model the trial holds after this epoch, for the pruner. A model that
        starts from weights or fitted scores with known validation logs (`start_logs`: a
        continuation, a fitted linear model or boosted trees) keeps the best of those and of every
        epoch (BestEpochStopping restores it). So an epoch worse than the start does not make the
        trial worse. Why: a default sentiment_amazon search at f4dd704 pruned three trials that
        started from a fitted logistic regression, on an epoch's validation loss of 0.53-0.81
        (worse than chance for one), while the fitted starts of the trials it completed held
        0.42-0.46, the search's best."""
        start = (self.start_logs or {}).get(self.settings.objective)
        if start is None:
            return value
        seen = [float(start), *(h[self.settings.objective] for h in self.history)]
        return max(seen) if self.settings.direction == "maximize" else min(seen)

    def use_probe(self, x, y):
        """What the model is fitted on (fit_model: a feature cache's outputs): the diagnostics' probe."""
        self._diagnose("probe", lambda d: d.use_probe(x, y))

    def _diagnose(self, where: str, step) -> None:
        if self.diagnostics is not None:
            try:
                step(self.diagnostics)
            except Exception as exc:
                _stop_diagnostics(self, where, exc)

    def on_train_begin(self, logs=None):
        self._diagnose("start", lambda d: (d.set_model(self.model), d.on_train_begin()))

    def on_train_batch_end(self, batch, logs=None):
        """At the search's deadline the epoch ends after this batch, mid-epoch if need be: Keras then
        validates what was trained and the trial completes with it (`on_epoch_end` says why). Why: an
        epoch over a large table can outlast the whole budget (86 s on 240,000 rows with `--timeout 60`,
        and the search returned after 190 s)."""
        if self.settings.deadline is not None and time.time() >= self.settings.deadline:
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(round(time.perf_counter() - self._epoch_started, 3))
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(logs)
        self.run.log_epoch(epoch, logs)
        self._diagnose(f"epoch {epoch + 1}", lambda d: d.on_epoch_end(epoch))
        if not all(math.isfinite(v) for v in logs.values()):
            self.nan_epoch = epoch
            self.model.stop_training = True
            return
        value = logs.get(self.settings.objective)
        if value is None:
            raise TrialFailed(
                f"objective {self.settings.objective!r} is not among the logged metrics ({', '.join(logs)})"
            )
        if self.settings.prune:
            self.trial.report(self._held(value), epoch)
            if self.trial.should_prune():
                self.pruned_epoch = epoch
                self.model.stop_training = True
                return
        explore_deadline, more = self.settings.explore_deadline, len(self.history) < self.settings.epochs
        if explore_deadline is not None and more and time.time() + self.epoch_seconds[-1] > explore_deadline:
            self.pruned_epoch, self.stopped_by = epoch, "schedule"  # the rest of the budget continues the best
            self.model.stop_training = True
            return
        if self.settings.deadline is not None and time.time() >= self.settings.deadline:
            self.stopped_by_deadline = True
            self.stopped_by = "timeout"
            self.model.stop_training = True
        elif self.settings.epochs_left is not None and len(self.history) >= self.settings.epochs_left:
            self.stopped_by = "max_epochs_total"
            self.model.stop_training = True


class ExploreDeadlinePassed(Exception):
    """A short trial's explore deadline passed in the middle of an epoch (budget schedule)."""


class ExploreDeadline(keras.callbacks.Callback):
    """Stops a short trial mid-epoch once its explore deadline has passed (budget schedule): one
    epoch of a slow configuration can outlast the whole reserve (34 s epochs of a recurrent net on
    1460-step series, bench/RESULTS.md "Suite"). Raises, so no validation pass follows."""

    def __init__(self, deadline: float):
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch, logs=None):
        if time.time() >= self.deadline:
            raise ExploreDeadlinePassed


def _stop_diagnostics(monitor: EpochMonitor, where: str, exc: Exception) -> None:
    """A look inside must never fail the trial: say why on its run and go on without it."""
    monitor.run.log_text(f"diagnostics stopped at {where}: {type(exc).__name__}: {exc}\n", "diagnostics_error.txt")
    monitor.diagnostics = None


class Runner:
    """The objective `study.optimize` calls: stamps the trial with its owner (first, so a kill from
    then on is detectable), passes the budget gate, samples the configuration and runs it."""

    def __init__(self, space, data: Dataset, settings: TrialSettings, tracker: Tracker, study_name: str):
        self.space, self.data, self.settings, self.tracker = space, data, settings, tracker
        self.study_name = study_name
        # called first with the trial; may wait, or raise to keep it from training
        self.gate: Callable[[optuna.Trial], None] | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(records.OWNER, owner_record())
        if self.gate:
            self.gate(trial)
        return self.run(trial, self.configure(trial))

    def configure(self, trial: optuna.Trial):
        """The trial's configuration: sampled from the space."""
        return self.space.sample(trial)

    def run(self, trial: optuna.Trial, config) -> float:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the runner holds between trials (a worker process); the search ends with it."""


class TrialRunner(Runner):
    """Trains each trial in this process; returns the best epoch's objective value."""

    def __init__(self, space, data: Dataset, settings: TrialSettings, tracker: Tracker, study_name: str):
        super().__init__(space, data, settings, tracker, study_name)
        self.features = FeatureCache(data)  # fixed preprocessing's outputs, computed once per search
        self.pretrained = PretrainCache(data, tracker)  # pretrained bodies, once per pretraining configuration

    def build(self, config):
        """The trial's model; a KerasTuner hypermodel builds its own (keras_tuner.py)."""
        return build_model(config.architecture, self.data, pretrained=pretraining_wanted(config.pretrain))

    def train(self, model, training: dict, monitor: EpochMonitor):
        """Fit with `monitor` among the callbacks; a hypermodel's own `fit` may replace this."""
        deadline = self.settings.explore_deadline
        callbacks = [monitor, *([ExploreDeadline(deadline)] if deadline is not None else [])]
        fit_model(model, self.data, training, self.settings, callbacks, self.features)

    def run(self, trial: optuna.Trial, config) -> float:
        """Train one sampled configuration (here, or in a child process: see isolation.py); a budget
        schedule may give the trial fewer epochs, or the saved weights of a trial to continue."""
        shared, attrs = self.settings, trial.user_attrs
        if records.TRIAL_EPOCHS in attrs:
            continuing = records.CONTINUED_FROM in attrs  # its steps are not comparable for pruning
            self.settings = replace(
                shared,
                epochs=int(attrs[records.TRIAL_EPOCHS]),
                pruning=not continuing,
                from_saved_weights=continuing,
                explore_deadline=attrs.get(records.EXPLORE_DEADLINE),
            )
        try:
            return self._run(trial, config, attrs)
        finally:
            self.settings = shared

    def _continued_model(self, trial: optuna.Trial, attrs: dict):
        """The saved model of the trial this one continues (budget schedule), or None."""
        source = attrs.get(records.CONTINUED_FROM)
        if source is None:
            return None
        frozen = trial.study.get_trials(deepcopy=False)[int(source)]
        if records.PRETRAIN_RUN in frozen.user_attrs:  # it goes on from the same pretraining
            trial.set_user_attr(records.PRETRAIN_RUN, frozen.user_attrs[records.PRETRAIN_RUN])
        with tempfile.TemporaryDirectory(prefix="automl-continue-") as folder:  # loaded into memory, then gone
            path = tracking.download_artifact(
                self.tracker.tracking_uri,
                frozen.user_attrs[records.MLFLOW_RUN_ID],
                frozen.user_attrs[records.MODEL_ARTIFACT],
                folder,
            )
            return load_model(path)

    def _run(self, trial: optuna.Trial, config, attrs: dict) -> float:
        reclaim_memory()
        if self.settings.seed is not None:
            keras.utils.set_random_seed(self.settings.seed + trial.number)
        trial.set_user_attr(records.PARAMS, config.params)
        worker = worker_id()
        trial.set_user_attr(records.WORKER, worker)
        run = self.tracker.start_trial(trial.number, self.study_name, config.params, worker)
        trial.set_user_attr(records.MLFLOW_RUN_ID, run.run_id)
        state = "FAIL"
        metrics: dict[str, float] = {}
        tags: dict[str, Any] = {}
        started = time.perf_counter()
        model = None
        settled = False  # another process ended this trial (reaped as dead): its MLflow run too
        try:
            training = training_settings(config.training)
            continued = self._continued_model(trial, attrs)
            model = continued or self.build(config)
            if continued is None and pretraining_wanted(config.pretrain):
                self._pretrain(trial, model, config, metrics, tags)
            elif records.PRETRAIN_RUN in trial.user_attrs:
                tags[records.TAG_PRETRAIN_RUN] = trial.user_attrs[records.PRETRAIN_RUN]
            metrics["param_count"] = model.count_params()
            monitor = EpochMonitor(trial, self.settings, run)
            if self.settings.diagnostics:
                monitor.diagnostics = Diagnostics(run.log_epoch)
                monitor.use_probe(self.data.x_train, self.data.y_train)
            probe = monitor.diagnostics
            try:
                self.train(model, training, monitor)
            except ExploreDeadlinePassed:
                epoch = len(monitor.history) + 1
                state, tags = "PRUNED", {records.TAG_PRUNED_AT: epoch, records.TAG_STOPPED_BY: "schedule"}
                raise optuna.TrialPruned(f"pruned in epoch {epoch}: the time left continues the best") from None
            if probe is not None:
                clock = time.perf_counter()
                diagnosis = diagnose(monitor.history, probe.records, self.data.task)
                trial.set_user_attr(records.DIAGNOSIS, diagnosis)
                tags[records.TAG_DIAGNOSIS] = diagnosis
                metrics["diagnostics_seconds"] = probe.seconds + time.perf_counter() - clock  # their cost
            metrics["train_seconds"] = time.perf_counter() - started
            metrics["epochs_run"] = len(monitor.history)
            if monitor.nan_epoch is not None:
                raise TrialFailed(f"non-finite loss or metric at epoch {monitor.nan_epoch + 1}")
            objective = self.settings.objective
            best_index = best_epoch(monitor.history, objective, self.settings.direction)
            at_best = monitor.history[best_index]
            offset = int(attrs.get(records.EPOCH_OFFSET, 0))  # a continuation: its source's best epochs
            best_epochs = offset + best_index + 1
            if start_kept(monitor.start_logs, at_best, objective, self.settings.direction):
                # no epoch beat the continued weights (or the fitted scores a new model starts
                # from): they were restored, and their figures stand
                at_best, best_epochs = dict(monitor.start_logs or {}), offset
                continuing = records.CONTINUED_FROM in attrs
                trial.set_user_attr(records.KEPT_SAVED_WEIGHTS if continuing else records.KEPT_FITTED_START, True)
                tags[records.TAG_KEPT_SAVED_WEIGHTS if continuing else records.TAG_KEPT_FITTED_START] = "true"
                if not continuing and self._settled_early(attrs, len(monitor.history)):
                    trial.set_user_attr(records.FIDELITY, 1.0)
                    trial.set_user_attr(records.SETTLED_EARLY, True)
                    attrs[records.FIDELITY] = 1.0  # its MLflow tag too
            trial.set_user_attr(records.BEST_EPOCHS, best_epochs)
            result = metrics[f"best_{objective}"] = at_best[objective]
            if wanted(config.compression):
                at_best, model = self._compress(trial, run, model, config, training, at_best, metrics, tags)
                result = at_best[objective]
            validation = {k: float(v) for k, v in at_best.items() if k.startswith("val_")}
            trial.set_user_attr(records.VAL_METRICS, validation)  # the leaderboard's accuracy, whatever the objective
            if objective != TIEBREAK and TIEBREAK in at_best:  # orders trials with equal values
                trial.set_user_attr(records.TIEBREAK, float(at_best[TIEBREAK]))
            if self.settings.objectives is not None:  # several objectives, or constraints
                result = self._objective_values(trial, model, at_best, metrics, tags)
            metrics.update({f"final_{k}": v for k, v in monitor.history[-1].items()})
            trial.set_user_attr(records.EPOCHS_RUN, len(monitor.history))
            trial.set_user_attr(records.EPOCH_SECONDS, monitor.epoch_seconds)
            trial.set_user_attr(records.PARAM_COUNT, metrics["param_count"])
            if monitor.pruned_epoch is not None:
                state, tags = "PRUNED", {records.TAG_PRUNED_AT: monitor.pruned_epoch + 1}
                if monitor.stopped_by:  # the budget schedule's, not the pruner's
                    tags[records.TAG_STOPPED_BY] = monitor.stopped_by
                raise optuna.TrialPruned(f"pruned at epoch {monitor.pruned_epoch + 1}")
            if monitor.stopped_by:
                tags[records.TAG_STOPPED_BY] = monitor.stopped_by
            if self._worth_saving(trial, result):
                self._save_model(model, run, trial)
            state = "COMPLETE"
            return result
        except optuna.TrialPruned:
            raise
        except optuna.exceptions.UpdateFinishedTrialError:
            settled = True  # e.g. this process outlived its search process by a moment: it ends silently
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr(records.FAIL_REASON, reason)
            tags[records.TAG_FAIL_REASON] = reason
            run.log_text(traceback.format_exc(), "traceback.txt")
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the run must not stay RUNNING
            state = "KILLED"
            trial.set_user_attr(records.FAIL_REASON, f"interrupted ({type(exc).__name__})")
            raise
        finally:
            metrics.setdefault("train_seconds", time.perf_counter() - started)
            if records.FIDELITY in attrs:
                tags[records.TAG_FIDELITY] = attrs[records.FIDELITY]
            if not settled:
                run.finish(state, metrics, {records.TAG_WORKER: worker, **tags})
            del model  # memory is reclaimed by reclaim_memory() at the next trial

    def _settled_early(self, attrs: dict, epochs_run: int) -> bool:
        """Whether a short (budget schedule) trial that kept its fitted start ran `patience` epochs:
        early stopping then ended it where a full-length run of it ends too, with the same model
        (the start), so it stands for a full-fidelity trial. Why: continuing such a trial loads that
        start and trains the same failing epochs again (at 5c26fa4 a search spent its three
        continuations on fitted starts and got the same model three times: tests/test_linear_prior.py)."""
        patience = self.settings.patience
        return (
            patience is not None and patience > 0 and attrs.get(records.FIDELITY, 1.0) < 1.0 and epochs_run >= patience
        )

    def _pretrain(self, trial, model, config, metrics: dict, tags: dict) -> None:
        """Start from the body pretrained on the unlabeled samples (pretraining.py: once per pretraining
        configuration, shared); the trial records which pretraining run it used."""
        done = self.pretrained.apply(model, config, self.settings)
        trial.set_user_attr(records.PRETRAIN_RUN, done["run_id"])
        tags[records.TAG_PRETRAIN_RUN] = done["run_id"]
        metrics.update(pretrain_seconds=done["seconds"], frozen_layers=done["frozen_layers"])
        if self.settings.seed is not None:  # pretraining seeded itself: the fine-tuning gets the trial's seed
            keras.utils.set_random_seed(self.settings.seed + trial.number)

    def _compress(self, trial, run, model, config, training: dict, at_best: dict, metrics: dict, tags: dict):
        """Prune and/or QAT the trained model (its `compression:` section); the trial's values are the
        compressed model's: what would ship."""
        done = compress(model, self.data, config.compression, training, self.settings)
        for step, logs in enumerate(done.history):  # the fine-tuning curves: `<phase>_<metric>` per epoch
            run.log_epoch(step, {f"{logs['phase']}_{k}": v for k, v in logs.items() if k != "phase"})
        objective = self.settings.objective
        value = done.val.get(objective)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"compression ({done.describe()}) left {objective} = {value}")
        trial.set_user_attr(records.UNCOMPRESSED, float(at_best[objective]))
        trial.set_user_attr(records.SPARSITY, done.sparsity)
        metrics.update({"sparsity": done.sparsity, f"compressed_{objective}": value})
        tags[records.TAG_COMPRESSION] = done.describe()
        metrics["compressed_param_count"] = done.model.count_params()
        return {**at_best, **done.val}, done.model

    def _objective_values(self, trial, model, at_best: dict, metrics: dict, tags: dict):
        """Every objective and constrained quantity, metrics at the best epoch, costs measured."""
        from .objectives import COSTS, measure_costs  # conversion and LiteRT load only when costs are asked

        obj = self.settings.objectives
        wanted = [*obj.names, *[n for n in obj.constraints if n not in obj.names]]
        missing = [n for n in wanted if n not in COSTS and n not in at_best]
        if missing:
            raise TrialFailed(f"objective {missing[0]!r} is not among the logged metrics ({', '.join(at_best)})")
        measured = {n: at_best[n] for n in wanted if n not in COSTS}
        measured.update(measure_costs(model, self.data, obj.costs))
        trial.set_user_attr(records.OBJECTIVES, measured)
        metrics.update({f"objective_{k}": v for k, v in measured.items()})
        if obj.constraints:
            slack = obj.constraint_values(measured)
            trial.set_user_attr(records.CONSTRAINTS, slack)
            for name, value in zip(obj.constraints, slack):
                trial.set_constraint(name, value)  # what Optuna 5's samplers read
            tags[records.TAG_FEASIBLE] = all(c <= 0 for c in slack)
        return [measured[n] for n in obj.names] if obj.multi else measured[obj.names[0]]

    def _worth_saving(self, trial, result) -> bool:
        """Keep the model of the best trial so far (of a Pareto front member, with several objectives)."""
        if not feasible(trial):
            return False  # infeasible: never the answer
        done = [
            t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if feasible(t)
        ]
        if isinstance(result, list):
            directions = self.settings.objectives.directions
            return not any(dominates(t.values, result, directions) for t in done)
        maximize = self.settings.direction == "maximize"
        mine = trial_key(result, trial.user_attrs, maximize)
        better = sum(trial_key(t.value, t.user_attrs, maximize) < mine for t in done if t.value is not None)
        return better < max(1, self.settings.keep_top)

    def _save_model(self, model, run, trial):
        """The `.keras` file; when ensembles are wanted (`keep_top` > 1), the validation predictions too."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            run.log_artifact(path, "model")
            if self.settings.keep_top > 1:
                predictions = Path(tmp) / Path(PREDICTIONS_ARTIFACT).name
                np.save(predictions, model.predict(self.data.x_val, batch_size=256, verbose=0).astype("float32"))
                run.log_artifact(predictions, str(Path(PREDICTIONS_ARTIFACT).parent))
                trial.set_user_attr(records.VAL_PREDICTIONS, PREDICTIONS_ARTIFACT)
        trial.set_user_attr(records.MODEL_ARTIFACT, MODEL_ARTIFACT)
