"""KerasTuner compatibility, both ways.

1. A KerasTuner `build_model(hp)` function or `keras_tuner.HyperModel` runs unchanged as the trial of
   `automl.Search(hypermodel=...)`. Its `hp` is an `OptunaHyperParameters`: a real
   `keras_tuner.HyperParameters` (name scopes, conditional scopes, `values`, `get` all KerasTuner's
   own) whose Int/Float/Choice/Boolean ask the Optuna trial, so the user's code gains Optuna's
   samplers and pruners and MLflow logging. The data is passed to `HyperModel.fit` as given.
2. Our YAML spaces searched by KerasTuner's own tuners: `Search(sampler="kt-random" | "kt-bayesian" |
   "kt-hyperband")`. KerasTuner's tuner is made over the space and its oracle becomes the study's
   sampler (`KerasTunerSampler`): it proposes each trial's values and learns each result, while the
   ordinary trial loop and `TrialRunner` train and log, so MLflow runs, the leaderboard,
   `best_model()` and export work as with any sampler.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import tempfile
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import optuna
from keras_tuner.engine import hyperparameters as hp_types

from . import records
from .data import Dataset, validation_size
from .errors import DataError, HyperModelError, TrialFailed
from .space.space import Configuration
from .training import early_stopping
from .trial import EpochMonitor, TrialRunner

TUNERS = {"kt-random": kt.RandomSearch, "kt-bayesian": kt.BayesianOptimization, "kt-hyperband": kt.Hyperband}
FIT_ARGUMENTS = ("x", "y", "validation_data", "epochs", "callbacks")  # the search passes these itself


# ---------------------------------------------------------------- 1. hp backed by an Optuna trial


class OptunaHyperParameters(kt.HyperParameters):
    """`keras_tuner.HyperParameters` whose values come from an Optuna trial.

    KerasTuner registers a hyperparameter once per build and gives it its default value; here an
    active one is suggested by the trial instead. An inactive one (inside a `conditional_scope` whose
    parent has another value) is never suggested: it returns None and is absent from `values` and from
    the trial's parameters, as in KerasTuner. Without a trial this is a plain `HyperParameters`.
    """

    def __init__(self, trial: optuna.Trial | None = None):
        super().__init__()
        self.trial = trial

    def _register(self, hyperparameter, overwrite=False):
        if self.trial is not None and self.is_active(hyperparameter) and hyperparameter.name not in self.values:
            self._validate_name(hyperparameter.name)
            self.values[hyperparameter.name] = suggest(self.trial, hyperparameter)
        return super()._register(hyperparameter, overwrite)


def suggest(trial, hp):
    """One KerasTuner hyperparameter -> the Optuna suggestion with the same values and scale."""
    name = hp.name
    if isinstance(hp, hp_types.Fixed):
        return hp.value
    if isinstance(hp, hp_types.Boolean):
        return trial.suggest_categorical(name, [False, True])
    if isinstance(hp, hp_types.Choice):
        return trial.suggest_categorical(name, list(hp.values))
    is_int = isinstance(hp, hp_types.Int)
    low, high, step, sampling = hp.min_value, hp.max_value, hp.step, hp.sampling
    if sampling == "linear":
        if step:  # KerasTuner's values are low + k * step <= high; Optuna wants high on the grid
            high = low + math.floor((high - low) / step + 1e-9) * step
        if is_int:
            return trial.suggest_int(name, low, high, step=step or 1)
        return trial.suggest_float(name, low, high, step=step)
    if step:  # log scale with a multiplicative step: low, low * step, ... <= high
        grid = [low * step**k for k in range(int(math.log(high / low, step) + 1e-9) + 1)]
        grid = [round(v) if is_int else v for v in grid]
        if sampling == "reverse_log":
            grid = [high + low - v for v in grid]
        return trial.suggest_categorical(name, grid)
    if sampling == "log":
        return (trial.suggest_int if is_int else trial.suggest_float)(name, low, high, log=True)
    # reverse_log: dense near high, i.e. high + low - (a log-scaled value); Optuna records the mirror
    mirror = (trial.suggest_int if is_int else trial.suggest_float)(f"{name}:mirror", low, high, log=True)
    return high + low - mirror


# ---------------------------------------------------------------- 1. the hypermodel as the trial


class _FunctionHyperModel(kt.HyperModel):
    def __init__(self, build):
        super().__init__(name=getattr(build, "__name__", None))
        self._build = build

    def build(self, hp):
        return self._build(hp)


class HyperModelSpace:
    """A user's KerasTuner hypermodel in the place of a search space: the search reads its name and
    fingerprint like a space's, and trains it with `HyperModelRunner`."""

    task = input = None

    def __init__(self, hypermodel, fit_kwargs: dict | None = None):
        if isinstance(hypermodel, kt.HyperModel):
            self.hypermodel, origin = hypermodel, type(hypermodel)
        elif callable(hypermodel):
            self.hypermodel, origin = _FunctionHyperModel(hypermodel), hypermodel
        else:
            raise HyperModelError(
                f"hypermodel must be a keras_tuner.HyperModel or a function build_model(hp) "
                f"returning a compiled Keras model, not {type(hypermodel).__name__}"
            )
        self.fit_kwargs = dict(fit_kwargs or {})
        clash = sorted(set(self.fit_kwargs) & set(FIT_ARGUMENTS))
        if clash:
            raise HyperModelError(
                f"fit_kwargs: {', '.join(clash)} are passed by the search itself "
                f"(data and validation_data go to fit, epochs too)"
            )
        self.name = getattr(origin, "__name__", type(origin).__name__)
        self.source = f"{getattr(origin, '__module__', '?')}.{getattr(origin, '__qualname__', self.name)}"
        try:
            self._code = inspect.getsource(origin)
        except (OSError, TypeError):  # defined interactively: the name has to do
            self._code = self.source
        self._metrics: tuple | None = None

    def fingerprint(self) -> str:
        """Hash of the hypermodel's code and fit options: a changed hypermodel is caught on resume."""
        text = self._code + json.dumps(self.fit_kwargs, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def parameters(self):
        raise HyperModelError(
            "a hypermodel's parameters are known only while it builds: sampler 'grid' "
            "needs a YAML space (use tpe, random...)"
        )

    def metrics(self) -> tuple[list[str], tuple[str, str]]:
        """(logged metric names, default objective): the model built with default values shows its
        compiled metrics; the first accuracy is maximised, else val_loss minimised. Building it here
        also reports a broken or uncompiled hypermodel before any trial runs."""
        if self._metrics is None:
            try:
                hp = kt.HyperParameters()
                self.hypermodel.declare_hyperparameters(hp)
                model = self.hypermodel.build(hp)
            except Exception as exc:
                raise HyperModelError(
                    f"hypermodel {self.name}: building with default values failed: {type(exc).__name__}: {exc}"
                ) from exc
            _check_compiled(model, self.name, HyperModelError)
            names = [
                m if isinstance(m, str) else m.get("config", {}).get("name")
                for m in (model.get_compile_config() or {}).get("metrics") or []
                if isinstance(m, (str, dict))
            ]
            names = [n for n in names if n]
            keras.backend.clear_session()
            accuracy = next((n for n in names if "acc" in n), None)
            default = (f"val_{accuracy}", "maximize") if accuracy else ("val_loss", "minimize")
            logged = ["loss", *names]
            self._metrics = (logged + [f"val_{n}" for n in logged], default)
        return self._metrics

    def dataset(
        self,
        x,
        y=None,
        *,
        validation_data=None,
        validation_split: float = 0.2,
        task=None,
        kind=None,
        name: str = "arrays",
        seed: int = 0,
        **_,
    ) -> Dataset:
        """The user's arrays as they are (the hypermodel was written for them: no reshaping, no
        label encoding), with a seeded split when no validation data is given."""
        return raw_dataset(
            x, y, validation_data=validation_data, validation_split=validation_split, name=name, seed=seed
        )

    def runner(self, data, settings, tracker, study_name: str) -> HyperModelRunner:
        return HyperModelRunner(self, data, settings, tracker, study_name)


def _check_compiled(model, name: str, error=TrialFailed):
    if not isinstance(model, keras.Model):
        raise error(f"hypermodel {name} returned {type(model).__name__}, not a Keras model")
    if not getattr(model, "compiled", False):
        raise error(
            f"hypermodel {name} returned an uncompiled model: call model.compile(...) in build(hp), "
            f"as KerasTuner expects"
        )


class HyperModelRunner(TrialRunner):
    """A `TrialRunner` whose model comes from the hypermodel and trains with `HyperModel.fit`.

    The parameters are known only once the hypermodel has run (a custom `fit` may sample some too),
    so they are recorded on the trial and its MLflow run after `build` and again after `fit`.
    """

    def configure(self, trial: optuna.Trial) -> Configuration:
        """Nothing to sample up front: the hypermodel asks `self.hp` while it builds and fits."""
        self.hp = OptunaHyperParameters(trial)
        self.trial = trial
        return Configuration(architecture={}, training={}, params={})

    def build(self, config):
        self.space.hypermodel.declare_hyperparameters(self.hp)
        model = self.space.hypermodel.build(self.hp)
        _check_compiled(model, self.space.name)
        if not model.built:  # a Sequential without keras.Input builds on its first batch: build it now,
            # as KerasTuner's own fit would, so its weights can be counted before training
            model(keras.tree.map_structure(lambda a: a[:1], self.data.x_train))
        return model

    def train(self, model, training: dict, monitor: EpochMonitor):
        callbacks = [monitor, *early_stopping(self.settings)]  # as fit_model does for our own models
        self._record_params(monitor.run)
        data = self.data
        try:
            result = self.space.hypermodel.fit(
                self.hp,
                model,
                data.x_train,
                data.y_train,
                validation_data=(data.x_val, data.y_val),
                epochs=self.settings.epochs,
                callbacks=callbacks,
                verbose=self.settings.verbose,
                **self.space.fit_kwargs,
            )
        finally:
            self._record_params(monitor.run)
        if not monitor.history:  # a custom fit without model.fit: its return value is the one "epoch"
            monitor.set_model(model)
            monitor.on_epoch_end(0, _result_logs(result, self.settings.objective))

    def _record_params(self, run):
        params = dict(self.hp.values)
        self.trial.set_user_attr(records.PARAMS, params)
        self.tracker.log_params(run.run_id, params)  # skips the ones already logged


def _result_logs(result, objective: str) -> dict:
    """What KerasTuner accepts from `HyperModel.fit`: a History, a dict of metrics or the objective."""
    if isinstance(result, list) and result:
        result = result[-1]
    if isinstance(result, keras.callbacks.History):
        return {k: v[-1] for k, v in result.history.items()}
    if isinstance(result, dict):
        return {k: float(v) for k, v in result.items()}
    if isinstance(result, (int, float, np.floating)):
        return {objective: float(result)}
    raise TrialFailed(
        f"HyperModel.fit returned {type(result).__name__}: expected a History, a dict of metrics or the objective value"
    )


def raw_dataset(
    x, y, *, validation_data=None, validation_split: float = 0.2, name: str = "arrays", seed: int = 0
) -> Dataset:
    """Arrays for a user's own model, checked for matching lengths but otherwise unchanged."""

    def arrays(xs, ys, what):
        if ys is None:
            raise DataError(f"{what}: y is required")
        xs, ys = np.asarray(xs), np.asarray(ys)
        if xs.ndim == 0 or len(xs) == 0:
            raise DataError(f"{what}: x is empty")
        if len(xs) != len(ys):
            raise DataError(f"{what}: x has {len(xs)} samples but y has {len(ys)}")
        return xs, ys

    x, y = arrays(x, y, "training data")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise DataError("validation_data must be a pair (x_val, y_val)")
        x_val, y_val = arrays(validation_data[0], validation_data[1], "validation data")
    else:
        n_val = validation_size(len(x), validation_split)
        order = np.random.default_rng(seed).permutation(len(x))
        x, y, x_val, y_val = x[order[n_val:]], y[order[n_val:]], x[order[:n_val]], y[order[:n_val]]
    integer = np.issubdtype(y.dtype, np.integer) or y.dtype == bool
    task = "classification" if integer or y.ndim == 2 else "regression"
    kind = {2: "tabular", 3: "sequence", 4: "image"}.get(x.ndim, "text" if x.dtype.kind in "OUS" else "arrays")
    classes = (list(range(y.shape[1])) if y.ndim == 2 else np.unique(y).tolist()) if task == "classification" else None
    return Dataset(x, y, x_val, y_val, task=task, kind=kind, name=name, class_names=classes)


# ---------------------------------------------------------------- 2. KerasTuner's tuners over our spaces


class _TunerTrial:
    """Looks like an Optuna trial to `SearchSpace.sample`, and asks a KerasTuner `hp` instead."""

    def __init__(self, hp: kt.HyperParameters, json_names: set | None = None):
        self.hp, self.json_names = hp, json_names if json_names is not None else set()

    def suggest_int(self, name, low, high, step=1, log=False):
        value = self.hp.Int(name, low, high, step=None if step == 1 else step, sampling="log" if log else "linear")
        mapped = self._onto(name, value, low, high, log)
        return min(low + round((mapped - low) / step) * step, high)  # on the range's own steps

    def suggest_float(self, name, low, high, step=None, log=False):
        return self._onto(
            name, self.hp.Float(name, low, high, step=step, sampling="log" if log else "linear"), low, high, log
        )

    def _onto(self, name, value, low, high, log):
        """A one_of is declared once, over the union of its ranges (KerasTuner then returns that
        name's value whatever range is asked): map the value onto the range this trial's conditions
        pick, proportionally (on the log scale if `log`), so the tuner's draws cover it evenly."""
        declared = next((p for p in self.hp.space if p.name == name), None)
        if declared is None or (declared.min_value, declared.max_value) == (low, high):
            return value
        scale, unscale = (math.log, math.exp) if log else (float, float)
        lo, hi = scale(declared.min_value), scale(declared.max_value)
        share = (scale(value) - lo) / (hi - lo) if hi > lo else 0.0
        return min(max(unscale(scale(low) + share * (scale(high) - scale(low))), low), high)

    def suggest_categorical(self, name, choices):
        if set(map(repr, choices)) == {"False", "True"}:
            return self.hp.Boolean(name)
        if len({type(c) for c in choices}) == 1 and type(choices[0]) in (int, float, str):
            return self.hp.Choice(name, list(choices))
        # KerasTuner's Choice holds one type of value (and no None): choose among their JSON texts
        self.json_names.add(name)
        return json.loads(self.hp.Choice(name, [json.dumps(c) for c in choices]))


class SpaceHyperModel(kt.HyperModel):
    """A `SearchSpace` as a KerasTuner hypermodel whose `build(hp)` returns our `Configuration`.

    Every parameter is declared up front, conditions left out (KerasTuner's conditions cannot say
    `gt` or `not_in`): the tuner gives each one a value in every trial and sampling the space reads
    only those whose `when` holds. The model itself is built and trained by `TrialRunner`.
    """

    def __init__(self, space):
        super().__init__(name=space.name)
        self.space = space
        self.json_names: set[str] = set()  # categoricals KerasTuner holds as JSON texts

    def declare_hyperparameters(self, hp):
        trial = _TunerTrial(hp, self.json_names)
        for name, param in self.space.parameters().items():
            param.suggest(trial, name)

    def build(self, hp) -> Configuration:
        return self.space.sample(_TunerTrial(hp, self.json_names))


class KerasTunerSampler(optuna.samplers.BaseSampler):
    """KerasTuner's RandomSearch, BayesianOptimization or Hyperband as an Optuna sampler of a YAML space.

    KerasTuner's own tuner is made over the space (`SpaceHyperModel`) and its oracle proposes each
    trial's values and learns each result, while the ordinary trial loop trains and logs: budget,
    timeout, failures, MLflow and the results work as with any sampler. Hyperband's rounds are
    honoured by `TunerRunner`. A resumed study starts a fresh oracle; once the oracle has nothing more
    to propose (a small discrete space is exhausted), the remaining trials are sampled at random.
    """

    def __init__(
        self,
        name: str,
        space,
        objective: str,
        direction: str,
        seed: int | None = None,
        max_trials: int = 20,
        epochs: int = 10,
    ):
        if name not in TUNERS:
            raise HyperModelError(f"unknown KerasTuner tuner {name!r} (choose from {', '.join(TUNERS)})")
        self.name, self.objective = name, objective
        self.hypermodel = SpaceHyperModel(space)
        self._dir = tempfile.TemporaryDirectory(prefix="automl-keras-tuner-")  # KerasTuner's files, removed with us
        options = {"seed": seed, "max_consecutive_failed_trials": 10**9}  # the search's own guard stops first
        if name == "kt-hyperband":
            options.update(max_epochs=epochs, hyperband_iterations=max_trials)
        else:
            options["max_trials"] = 10_000
        if name == "kt-bayesian":  # random start as long as our TPE's
            options["num_initial_points"] = max(2, min(10, max_trials // 3))
        self.tuner = TUNERS[name](
            hypermodel=self.hypermodel,
            objective=kt.Objective(objective, direction[:3]),
            directory=self._dir.name,
            project_name="tuner",
            overwrite=True,
            **options,
        )
        self.oracle = self.tuner.oracle
        self.oracle.verbose = 0
        self._fallback = optuna.samplers.RandomSampler(seed)
        # Optuna trial number -> KerasTuner trial (None: random)
        self._trials: dict[int, kt.engine.trial.Trial | None] = {}

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def before_trial(self, study, trial):
        if trial.number in self._trials:
            return
        proposed = self.oracle.create_trial("automl")
        if proposed.status != kt.engine.trial.TrialStatus.RUNNING:
            self._trials[trial.number] = None
            return
        self._trials[trial.number] = proposed
        values = proposed.hyperparameters.values
        for key, value in {
            records.KERAS_TUNER_TRIAL: proposed.trial_id,
            **{k: v for k, v in values.items() if k.startswith("tuner/")},
        }.items():
            study._storage.set_trial_user_attr(trial._trial_id, key, value)

    def sample_independent(self, study, trial, param_name, param_distribution):
        proposed = self._trials.get(trial.number)
        values = proposed.hyperparameters.values if proposed is not None else {}
        if param_name not in values:
            return self._fallback.sample_independent(study, trial, param_name, param_distribution)
        value = values[param_name]
        return json.loads(value) if param_name in self.hypermodel.json_names else value

    def after_trial(self, study, trial, state, values):
        proposed = self._trials.pop(trial.number, None)
        if proposed is None:
            return
        hps = proposed.hyperparameters.values
        for name, value in trial.params.items():  # what ran: an enqueued trial fixes its own values
            if name in hps:
                hps[name] = json.dumps(value) if name in self.hypermodel.json_names else value
        if values:  # complete, or pruned with its last reported value
            self.oracle.update_trial(proposed.trial_id, {self.objective: values[0]})
            proposed.status = kt.engine.trial.TrialStatus.COMPLETED
        else:
            proposed.status = kt.engine.trial.TrialStatus.FAILED
        self.oracle.end_trial(proposed)

    def reseed_rng(self):
        self._fallback.reseed_rng()

    def plan(self, number: int) -> dict | None:
        """Hyperband's round for a trial: epochs to train, and the weights to start from and leave."""
        proposed = self._trials.get(number)
        if proposed is None or "tuner/epochs" not in proposed.hyperparameters.values:
            return None
        values = proposed.hyperparameters.values
        warm = self._checkpoint(values.get("tuner/trial_id"))
        start = values.get("tuner/initial_epoch", 0) if warm and os.path.exists(warm) else 0
        return {
            "epochs": max(1, values["tuner/epochs"] - start),
            "warm_from": warm if start else None,
            "save_to": self._checkpoint(proposed.trial_id),
            "from_trial": values.get("tuner/trial_id"),
        }

    def _checkpoint(self, tuner_trial_id) -> str | None:
        return (
            os.path.join(self.tuner.get_trial_dir(tuner_trial_id), "checkpoint.weights.h5") if tuner_trial_id else None
        )


class TunerRunner(TrialRunner):
    """The runner of kt-hyperband: a trial trains for its Hyperband round's epochs; a configuration
    promoted to a longer round starts from the weights its previous round ended with."""

    warm_from: str | None = None
    save_to: str | None = None

    def run(self, trial, config) -> float:
        sampler = trial.study.sampler
        plan = sampler.plan(trial.number) if isinstance(sampler, KerasTunerSampler) else None
        if plan is None:
            return super().run(trial, config)
        base = self.settings
        self.settings = dataclasses.replace(base, epochs=plan["epochs"])
        self.warm_from, self.save_to = plan["warm_from"], plan["save_to"]
        if self.warm_from:
            trial.set_user_attr(records.WARM_STARTED_FROM, plan["from_trial"])
        try:
            return super().run(trial, config)
        finally:
            self.settings, self.warm_from, self.save_to = base, None, None

    def build(self, config):
        model = super().build(config)
        if self.warm_from:
            model.load_weights(self.warm_from)
        return model

    def train(self, model, training: dict, monitor: EpochMonitor):
        super().train(model, training, monitor)
        if self.save_to:
            model.save_weights(self.save_to)


# ---------------------------------------------------------------- what automl.Search calls


def check_search(
    sampler: str, hypermodel, fit_kwargs, *, space, objectives, constraints, isolate: bool
) -> tuple[HyperModelSpace | None, dict[str, Any]]:
    """Settings that cannot go together, refused when the `Search` is made. Returns the hypermodel
    (if any) and the settings KerasTuner decides instead of the search (Hyperband: no pruner)."""
    overrides: dict[str, Any] = {}
    if sampler.startswith("kt-"):
        if sampler not in TUNERS:
            raise HyperModelError(f"unknown KerasTuner tuner {sampler!r} (choose from {', '.join(TUNERS)})")
        refused = {
            "a hypermodel (use KerasTuner itself, or an Optuna sampler)": hypermodel is not None,
            "several objectives": len(objectives or []) > 1,
            "constraints": bool(constraints),
            "isolate (with kt-hyperband)": isolate and sampler == "kt-hyperband",
        }
        bad = [k for k, v in refused.items() if v]
        if bad:
            raise HyperModelError(
                f"sampler {sampler!r} (a KerasTuner tuner, one objective) cannot be combined with {', '.join(bad)}"
            )
        if sampler == "kt-hyperband":  # Hyperband itself decides which configurations train longer
            overrides["pruner"] = "none"
    if hypermodel is None:
        if fit_kwargs:
            raise HyperModelError("fit_kwargs are for a hypermodel's fit; no hypermodel was given")
        return None, overrides
    if space is not None:
        raise HyperModelError("give a space or a hypermodel, not both: a KerasTuner hypermodel defines its own space")
    if isolate:
        raise HyperModelError("isolate/memory_limit_mb run our spaces in child processes, not a hypermodel")
    return HyperModelSpace(hypermodel, fit_kwargs), overrides


def make_sampler(
    name: str, space, objective: str, direction: str, seed: int | None, max_trials: int, epochs: int
) -> KerasTunerSampler:
    return KerasTunerSampler(name, space, objective, direction, seed=seed, max_trials=max_trials, epochs=epochs)


def make_runner(hypermodel: HyperModelSpace | None, space, data, settings, tracker, study_name: str) -> TrialRunner:
    if hypermodel is not None:
        return hypermodel.runner(data, settings, tracker, study_name)
    return TunerRunner(space, data, settings, tracker, study_name)
