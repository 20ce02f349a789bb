"""One trial: sample, build, compile, fit with callbacks, evaluate, log, clean up."""
from __future__ import annotations

import gc
import math
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import keras
import optuna

from .builder import build_model
from .feature_cache import FeatureCache
from .recovery import OWNER_ATTR, owner_record
from .results import TIEBREAK_ATTR, feasible, rank_key
from .training import loss_and_metrics, make_optimizer, training_settings

MODEL_ARTIFACT = "model/model.keras"
TIEBREAK = "val_loss"  # between epochs (and trials) with equal objective values, the lower one wins


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


class TrialFailed(RuntimeError):
    """A trial that produced no usable result (e.g. a NaN loss); the search goes on."""


@dataclass
class TrialSettings:
    objective: str
    direction: str          # maximize | minimize
    epochs: int = 10
    patience: int | None = 3  # early stopping on the objective; None turns it off
    seed: int | None = None
    deadline: float | None = None  # time.time() after which training stops after the epoch in flight
    verbose: int = 0
    objectives: object = None      # automl.objectives.Objectives when there are several, or constraints
    epochs_left: int | None = None  # what remains of the search's max_epochs_total

    @property
    def prune(self) -> bool:  # Optuna cannot prune multi-objective trials
        return not (self.objectives is not None and self.objectives.multi)


class EpochMonitor(keras.callbacks.Callback):
    """Logs epoch metrics, reports to the pruner, stops on NaN or at the deadline."""

    def __init__(self, trial, settings: TrialSettings, run):
        super().__init__()
        self.trial, self.settings, self.run = trial, settings, run
        self.history: list[dict] = []
        self.nan_epoch = self.pruned_epoch = None
        self.stopped_by_deadline = False
        self.stopped_by: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append(logs)
        self.run.log_epoch(epoch, logs)
        if not all(math.isfinite(v) for v in logs.values()):
            self.nan_epoch = epoch
            self.model.stop_training = True
            return
        value = logs.get(self.settings.objective)
        if value is None:
            raise TrialFailed(f"objective {self.settings.objective!r} is not among the logged metrics "
                              f"({', '.join(logs)})")
        if self.settings.prune:
            self.trial.report(value, epoch)
            if self.trial.should_prune():
                self.pruned_epoch = epoch
                self.model.stop_training = True
                return
        if self.settings.deadline is not None and time.time() >= self.settings.deadline:
            self.stopped_by_deadline = True
            self.stopped_by = "timeout"
            self.model.stop_training = True
        elif self.settings.epochs_left is not None and len(self.history) >= self.settings.epochs_left:
            self.stopped_by = "max_epochs_total"
            self.model.stop_training = True


class BestEpochStopping(keras.callbacks.Callback):
    """Early stopping on the objective, restoring the best epoch's weights at the end; an epoch with
    an equal objective and a lower `val_loss` also counts as progress (and becomes the best epoch).

    Why: on small validation sets accuracy moves in coarse steps. It sits on the majority class for
    the first epochs or ties between epochs while the loss still shows learning; plain early
    stopping then stops a model that is improving, or restores the first of several tied epochs.
    """

    def __init__(self, monitor: str, direction: str = "maximize", patience: int = 3, tiebreak: str = TIEBREAK):
        super().__init__()
        self.monitor, self.patience, self.tiebreak = monitor, patience, tiebreak
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.on_train_begin()

    def on_train_begin(self, logs=None):
        self.best, self.best_weights, self.wait = None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        key = epoch_key(logs or {}, self.monitor, self.sign, self.tiebreak)
        if key is None:
            return
        if self.best is None or key > self.best:
            self.best, self.wait = key, 0
            self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def epoch_key(logs: dict, monitor: str, sign: float, tiebreak: str | None = TIEBREAK) -> tuple | None:
    """How good an epoch is (larger is better): the objective, then a lower `tiebreak` loss; None
    when the objective is missing or not finite."""
    value = logs.get(monitor)
    if value is None or not math.isfinite(value):
        return None
    loss = logs.get(tiebreak, math.inf) if tiebreak and tiebreak != monitor else math.inf
    return (sign * value, -loss if math.isfinite(loss) else -math.inf)


def best_epoch(history: list[dict], monitor: str, direction: str) -> int:
    """Index of the epoch BestEpochStopping restores (the first of fully equal epochs)."""
    sign = 1.0 if direction == "maximize" else -1.0
    keys = [epoch_key(logs, monitor, sign) for logs in history]
    ranked = [i for i, k in enumerate(keys) if k is not None]
    return max(ranked, key=lambda i: (keys[i], -i)) if ranked else len(history) - 1


def early_stopping(settings: TrialSettings) -> list:
    """The trial's early-stopping callback (none when patience is off); also used for hypermodels."""
    if not settings.patience:
        return []
    return [BestEpochStopping(settings.objective, settings.direction, settings.patience)]


def fit_model(model, data, training: dict, settings: TrialSettings, callbacks: list, features=None):
    """Compile and fit; shared by trials and by the bare-Keras baseline in bench/overhead.py. With a
    `FeatureCache`, the layers after the model's fixed preprocessing train on its cached outputs
    (the same weights: `model` is trained, compiled as usual and computes what was trained)."""
    steps = settings.epochs * math.ceil(len(data.y_train) / int(training["batch_size"]))
    loss, metrics = loss_and_metrics(data.task, training)
    optimizer = make_optimizer(training, steps, model)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    trainable, x_train, x_val = (features.split(model) if features is not None else None) or (
        model, data.x_train, data.x_val)
    if trainable is not model:
        trainable.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return trainable.fit(x_train, data.y_train, validation_data=(x_val, data.y_val),
                         epochs=settings.epochs, batch_size=int(training["batch_size"]),
                         callbacks=[*callbacks, *early_stopping(settings)], verbose=settings.verbose)


class TrialRunner:
    """Callable objective for `study.optimize`: returns the best epoch's objective value."""

    def __init__(self, space, data, settings: TrialSettings, tracker, study_name: str):
        self.space, self.data, self.settings, self.tracker = space, data, settings, tracker
        self.study_name = study_name
        self.gate = None  # called first with the trial; may wait, or raise to keep it from training
        self.features = FeatureCache(data)  # fixed preprocessing's outputs, computed once per search

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER_ATTR, owner_record())  # first: so a kill from here on is detectable
        if self.gate:
            self.gate(trial)
        return self.run(trial, self.space.sample(trial))

    def build(self, config):
        """The trial's model; a KerasTuner hypermodel builds its own (keras_tuner.py)."""
        return build_model(config.architecture, self.data)

    def train(self, model, training: dict, monitor: EpochMonitor):
        """Fit with `monitor` among the callbacks; a hypermodel's own `fit` may replace this."""
        fit_model(model, self.data, training, self.settings, [monitor], self.features)

    def run(self, trial: optuna.Trial, config) -> float:
        """Train one sampled configuration (here, or in a child process: see isolation.py)."""
        reclaim_memory()
        if self.settings.seed is not None:
            keras.utils.set_random_seed(self.settings.seed + trial.number)
        trial.set_user_attr("params", config.params)
        run = self.tracker.start_trial(trial.number, self.study_name, config.params)
        trial.set_user_attr("mlflow_run_id", run.run_id)
        state, metrics, tags = "FAIL", {}, {}
        started = time.perf_counter()
        model = None
        try:
            training = training_settings(config.training)
            model = self.build(config)
            metrics["param_count"] = model.count_params()
            monitor = EpochMonitor(trial, self.settings, run)
            self.train(model, training, monitor)
            metrics["train_seconds"] = time.perf_counter() - started
            metrics["epochs_run"] = len(monitor.history)
            if monitor.nan_epoch is not None:
                raise TrialFailed(f"non-finite loss or metric at epoch {monitor.nan_epoch + 1}")
            objective = self.settings.objective
            at_best = monitor.history[best_epoch(monitor.history, objective, self.settings.direction)]
            result = metrics[f"best_{objective}"] = at_best[objective]
            if objective != TIEBREAK and TIEBREAK in at_best:  # orders trials with equal values
                trial.set_user_attr(TIEBREAK_ATTR, float(at_best[TIEBREAK]))
            if self.settings.objectives is not None:  # several objectives, or constraints
                result = self._objective_values(trial, model, at_best, metrics, tags)
            metrics.update({f"final_{k}": v for k, v in monitor.history[-1].items()})
            trial.set_user_attr("epochs_run", len(monitor.history))
            trial.set_user_attr("param_count", metrics["param_count"])
            if monitor.pruned_epoch is not None:
                state, tags = "PRUNED", {"automl.pruned_at_epoch": monitor.pruned_epoch + 1}
                raise optuna.TrialPruned(f"pruned at epoch {monitor.pruned_epoch + 1}")
            if monitor.stopped_by:
                tags["automl.stopped_by"] = monitor.stopped_by
            if self._worth_saving(trial, result):
                self._save_model(model, run, trial)
            state = "COMPLETE"
            return result
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            tags["automl.fail_reason"] = reason
            run.log_text(traceback.format_exc(), "traceback.txt")
            raise
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: the run must not stay RUNNING
            state = "KILLED"
            trial.set_user_attr("fail_reason", f"interrupted ({type(exc).__name__})")
            raise
        finally:
            metrics.setdefault("train_seconds", time.perf_counter() - started)
            run.finish(state, metrics, tags)
            del model  # memory is reclaimed by reclaim_memory() at the next trial

    def _objective_values(self, trial, model, at_best: dict, metrics: dict, tags: dict):
        """Every objective and constrained quantity, metrics at the best epoch, costs measured."""
        from .objectives import COSTS, measure_costs

        obj = self.settings.objectives
        wanted = [*obj.names, *[n for n in obj.constraints if n not in obj.names]]
        missing = [n for n in wanted if n not in COSTS and n not in at_best]
        if missing:
            raise TrialFailed(f"objective {missing[0]!r} is not among the logged metrics ({', '.join(at_best)})")
        measured = {n: at_best[n] for n in wanted if n not in COSTS}
        measured.update(measure_costs(model, self.data, obj.costs))
        trial.set_user_attr("objectives", measured)
        metrics.update({f"objective_{k}": v for k, v in measured.items()})
        if obj.constraints:
            slack = obj.constraint_values(measured)
            trial.set_user_attr("constraints", slack)
            for name, value in zip(obj.constraints, slack):
                trial.set_constraint(name, value)  # what Optuna 5's samplers read
            tags["automl.feasible"] = all(c <= 0 for c in slack)
        return [measured[n] for n in obj.names] if obj.multi else measured[obj.names[0]]

    def _worth_saving(self, trial, result) -> bool:
        """Keep the model of the best trial so far (of a Pareto front member, with several objectives)."""
        from .objectives import dominates

        if not feasible(trial):
            return False  # infeasible: never the answer
        done = [t for t in trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if feasible(t)]
        if isinstance(result, list):
            directions = self.settings.objectives.directions
            return not any(dominates(t.values, result, directions) for t in done)
        if not done:
            return True
        maximize = self.settings.direction == "maximize"
        best = min(rank_key(t.value, t.user_attrs.get(TIEBREAK_ATTR), maximize) for t in done)
        return rank_key(result, trial.user_attrs.get(TIEBREAK_ATTR), maximize) <= best

    def _save_model(self, model, run, trial):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model.save(path)
            run.log_artifact(path, "model")
        trial.set_user_attr("model_artifact", MODEL_ARTIFACT)
